"""Fast, accurate softplus for NumPy arrays: the semantics of ``torch.nn.functional.softplus``.

Public API (see the project's API.md): `softplus`, `softplus_grad`, `softplus_backward`,
`softplus_inverse`; the dispatcher `available_backends`, `get_backend`, `set_backend`,
`use_backend`, `explain`; threads `set_num_threads`, `get_num_threads`; the ufuncs in
`fastsoftplus.ufuncs`; `apply_file` for ``.npy`` files bigger than memory. Importing the package
imports no compiled backend (numba loads lazily).
"""

from ._api import explain, softplus, softplus_backward, softplus_grad, softplus_inverse
from ._apply import apply_file
from ._dispatch import (BackendUnavailableError, available_backends, get_backend, set_backend,
                        use_backend)
from ._threads import get_num_threads, set_num_threads
from . import ufuncs

__version__ = "0.1.0"

__all__ = [
    "softplus",
    "softplus_grad",
    "softplus_backward",
    "softplus_inverse",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "explain",
    "apply_file",
    "set_num_threads",
    "get_num_threads",
    "BackendUnavailableError",
    "ufuncs",
    "__version__",
]
