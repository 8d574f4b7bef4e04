"""C sources of the "cython" backend; the compiled module is ``fastsoftplus._cy._ext``."""
