"""In place (``out`` is the input x, or grad_output for softplus_backward), each compiled backend,
n = 1e5 one thread and 1e7 all cores: the speed should be that of a separate ``out`` (the
``contig`` groups of the same size). Before the numba loops read each in-place block from a copy
(``_nbkernels.stage``), LLVM's run-time overlap check sent them to its scalar fallback (ratio
to ReLU, n = 1e5 one thread: 11-43 against 3.2-8.3 now; 1e7 all cores: 3.3-12.5 against
0.9-3.4).

The layout field is ``inplace``, so the report's tables (contiguous/strided) leave these out. The
input is restored before each call, untimed (the call overwrites it); the ratio is to ReLU on the
same input with a separate output, timed interleaved as everywhere.
"""
import numpy as np
import pytest

import cases

SIZES = ((10**5, 1), (10**7, None))  # (n, threads); None: all cores


@pytest.mark.parametrize("n,threads", SIZES, ids=["1e5-t1", "1e7-all"])
@pytest.mark.parametrize("impl", ("cython", "numba"))
@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("func", cases.FUNCS)
def test_inplace(run_case, benchmark, func, dtype, impl, n, threads):
    import fastsoftplus as fs
    from fastsoftplus import _dispatch
    if impl not in _dispatch.available_backends():
        pytest.skip(f"backend {impl} unavailable: {_dispatch.unavailable_reasons().get(impl)}")
    if benchmark.disabled and n > cases.SMOKE_MAX_N:
        pytest.skip(f"smoke run: n <= {cases.SMOKE_MAX_N}")
    threads = threads or cases.all_threads()
    fs.set_num_threads(threads)  # restored after the session (conftest._restore_threads)
    args, _ = cases.inputs(func, dtype, n, "contig")
    saved = tuple(a.copy() for a in args)
    work = tuple(a.copy() for a in args)
    out = work[0]  # x, or grad_output for softplus_backward
    f = getattr(fs, func)
    case = cases.Case(func, dtype, n, "inplace", threads, impl)

    def restore():
        for w, s in zip(work, saved):
            np.copyto(w, s)
    run_case(case, lambda: f(*work, cases.BETA, cases.THRESHOLD, out=out, backend=impl),
             prepare=restore)
