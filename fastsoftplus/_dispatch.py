"""Backend registry and the choice of backend for each call.

Registering a backend is one entry in ``BACKENDS`` (name -> module, in preference order); the
module follows the protocol described in the project notes: ``NAME``, ``run(func, arrays, out,
beta, threshold, nthreads)``, ``info()``, optionally ``UFUNCS``. Importing it must be cheap; an
``ImportError`` raised by the import is the human-readable reason it is unavailable.

Which backend runs a call, first rule that applies:

1. ``backend=`` given to the call;
2. ``use_backend(name)`` in force in the calling thread / context (a ``contextvars`` variable:
   it does not leak into other threads, so concurrent ``with use_backend(...)`` blocks in
   different threads do not disturb each other; threads started inside the block do not
   inherit it);
3. the process-global default: ``set_backend(name)``, initially ``FASTSOFTPLUS_BACKEND``;
4. the automatic choice (``_auto``): by dtype, size, layout and what is installed.

Availability is decided once per process (the first time a backend is needed) and cached.
``FASTSOFTPLUS_DISABLE`` and ``FASTSOFTPLUS_BACKEND`` are read when this module is imported.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
from types import ModuleType
from typing import Iterator, NamedTuple

from . import _constants
from ._threads import get_num_threads

#: The registry, in preference order (the automatic choice takes the first that is available).
BACKENDS: dict[str, str] = {
    "cython": "fastsoftplus._cython",
    "numba": "fastsoftplus._numba",
    "numpy": "fastsoftplus._reference",
}

FUNCS = ("softplus", "softplus_grad", "softplus_backward", "softplus_inverse")

# --- Crossover sizes: defined once, in _constants.py (the Cython loops share them). ------------
PARALLEL_MIN_SIZE = _constants.PARALLEL_MIN_N

DISABLE_ENV = "FASTSOFTPLUS_DISABLE"
BACKEND_ENV = "FASTSOFTPLUS_BACKEND"

_DISABLED = frozenset(
    s.strip().lower() for s in os.environ.get(DISABLE_ENV, "").split(",") if s.strip())
_ENV_BACKEND = os.environ.get(BACKEND_ENV, "").strip() or None


class BackendUnavailableError(RuntimeError):
    """A known backend cannot run here; ``.reason`` says why, ``.backend`` names it."""

    def __init__(self, backend: str, reason: str):
        self.backend = backend
        self.reason = reason
        super().__init__(f"fastsoftplus backend {backend!r} is unavailable: {reason}")


_lock = threading.RLock()
_modules: dict[str, ModuleType] = {}
_reasons: dict[str, str] = {}
_UNSET = object()
_global_default: object = _UNSET  # resolved from FASTSOFTPLUS_BACKEND at first use
_global_source = BACKEND_ENV  # what set the global default: the environment or set_backend()
_NO_OVERRIDE = "<no use_backend block>"
# The use_backend() choice of this thread/context: _NO_OVERRIDE, a name, or None (automatic).
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fastsoftplus_backend", default=_NO_OVERRIDE)
_auto_cache: tuple[str, str] | None = None


def check_name(name: object, what: str = "backend") -> str:
    """Return ``name`` if it is a registered backend name, else raise ``ValueError``/``TypeError``."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a backend name (str) or None, got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(
            f"{what}={name!r} is not a known backend; known backends: {', '.join(BACKENDS)}")
    return name


def _load(name: str) -> ModuleType | None:
    """Import backend ``name`` once; on failure remember the reason and return None."""
    if name in _modules:
        return _modules[name]
    if name in _reasons:
        return None
    with _lock:
        if name in _modules or name in _reasons:
            return _modules.get(name)
        if name in _DISABLED:
            _reasons[name] = f"disabled by {DISABLE_ENV}"
            return None
        try:
            mod = importlib.import_module(BACKENDS[name])
        except ImportError as e:
            if isinstance(e, ModuleNotFoundError) and e.name == BACKENDS[name]:
                _reasons[name] = f"module {BACKENDS[name]} is not installed"
            else:
                _reasons[name] = str(e) or f"{type(e).__name__} importing {BACKENDS[name]}"
            return None
        except Exception as e:  # a broken backend must not break the package
            _reasons[name] = f"importing {BACKENDS[name]} failed: {type(e).__name__}: {e}"
            return None
        if not callable(getattr(mod, "run", None)):
            _reasons[name] = f"{BACKENDS[name]} does not define run()"
            return None
        _modules[name] = mod
        return mod


def available_backends() -> tuple[str, ...]:
    """Return the names of the backends usable here, in preference order.

    Returns
    -------
    tuple of str
        A subset of ``("cython", "numba", "numpy")``. Importing a backend to find out is done once
        per process (it may import numba).
    """
    return tuple(n for n in BACKENDS if _load(n) is not None)


def unavailable_reasons() -> dict[str, str]:
    """Map each unavailable backend to the reason it is unavailable."""
    available_backends()
    return {n: _reasons[n] for n in BACKENDS if n in _reasons}


def disabled_unknown() -> list[str]:
    """Names in ``FASTSOFTPLUS_DISABLE`` that are no backend (probably typos; shown by ``info``)."""
    return sorted(_DISABLED - set(BACKENDS))


def backend_module(name: str, what: str = "backend") -> ModuleType:
    """The module of backend ``name``: ``ValueError`` if unknown, ``BackendUnavailableError`` if
    it cannot run here."""
    mod = _modules.get(name)
    if mod is not None:
        return mod
    check_name(name, what)
    mod = _load(name)
    if mod is None:
        raise BackendUnavailableError(name, _reasons[name])
    return mod


def _resolve_global() -> str | None:
    global _global_default
    if _global_default is _UNSET:
        with _lock:
            if _global_default is _UNSET:
                if _ENV_BACKEND is not None:
                    check_name(_ENV_BACKEND, BACKEND_ENV)
                _global_default = _ENV_BACKEND
    return _global_default  # type: ignore[return-value]


def get_backend() -> str | None:
    """Return the backend forced for calls without ``backend=``, or None for the automatic choice.

    Returns
    -------
    str or None
        The ``use_backend`` name in force in this thread/context, else the process-global default
        (``set_backend``, initially ``FASTSOFTPLUS_BACKEND``), else None.
    """
    name = _override.get()
    return name if name is not _NO_OVERRIDE else _resolve_global()


def set_backend(name: str | None) -> None:
    """Set the process-global default backend (None: automatic choice).

    Parameters
    ----------
    name : str or None
        A name from ``available_backends()``. Affects calls from every thread that has no
        ``use_backend`` block or ``backend=`` argument in force.

    Raises
    ------
    ValueError
        If `name` is not a known backend.
    BackendUnavailableError
        If it is known but cannot run here.
    """
    global _global_default, _global_source
    if name is not None:
        backend_module(name)
    with _lock:
        _global_default = name
        _global_source = "set_backend()"


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Context manager forcing backend `name` (None: automatic) inside the ``with`` block.

    The choice is local to the calling thread (and asyncio task): other threads keep theirs.

    Raises
    ------
    ValueError
        If `name` is not a known backend.
    BackendUnavailableError
        If it is known but cannot run here (raised on entering the block).
    """
    if name is not None:
        backend_module(name)
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)


def _auto(func: str, dtype, size: int, contiguous: bool) -> tuple[str, str]:
    """The automatic choice: (backend name, the rule that chose it).

    Initial rule (PROVISIONAL until measured): the first available backend in preference order;
    every backend handles both float types, any strides and every size.
    """
    global _auto_cache
    if _auto_cache is None:
        names = available_backends()
        if not names:  # only if "numpy" itself is disabled
            raise BackendUnavailableError("numpy", unavailable_reasons().get("numpy", "?"))
        skipped = [f"{n} unavailable: {r}" for n, r in unavailable_reasons().items()
                   if list(BACKENDS).index(n) < list(BACKENDS).index(names[0])]
        rule = f"automatic: first available in preference order {' > '.join(BACKENDS)}"
        if skipped:
            rule += " (" + "; ".join(skipped) + ")"
        _auto_cache = (names[0], rule)
    return _auto_cache


class Choice(NamedTuple):
    name: str
    module: ModuleType
    nthreads: int
    rule: str  #: why this backend


def choose(func: str, dtype, size: int, contiguous: bool, backend: str | None) -> Choice:
    """Pick the backend and thread count for one call (see the module docstring for the order)."""
    if backend is not None:
        name, rule = backend, "backend= argument"
        mod = backend_module(name)
    else:
        name = _override.get()
        if name is not _NO_OVERRIDE:
            rule = "use_backend() in force"
        else:
            name = _resolve_global()
            rule = _global_source if name is not None else None
        if name is None:
            name, auto_rule = _auto(func, dtype, size, contiguous)
            rule = auto_rule if rule is None else f"{rule}: {auto_rule}"
            mod = _modules[name]
        else:
            mod = backend_module(name, BACKEND_ENV if rule == BACKEND_ENV else "backend")
    nthreads = 1 if size < PARALLEL_MIN_SIZE else get_num_threads()
    return Choice(name, mod, nthreads, rule)


def threads_rule(size: int) -> str:
    """Why ``choose`` picks its thread count for ``size`` elements (for ``explain``)."""
    if size < PARALLEL_MIN_SIZE:
        return f"size {size} < PARALLEL_MIN_SIZE={PARALLEL_MIN_SIZE}"
    return "get_num_threads()"


def ufunc_table() -> tuple[str, dict]:
    """(backend name, its ``UFUNCS``) from the first available backend that defines them."""
    for name in BACKENDS:
        mod = _load(name)
        table = getattr(mod, "UFUNCS", None) if mod is not None else None
        if table:
            return name, table
    reasons = unavailable_reasons()
    detail = "; ".join(f"{n}: {reasons.get(n, 'defines no UFUNCS')}" for n in BACKENDS
                       if n != "numpy")
    raise BackendUnavailableError(
        "cython/numba", f"no available backend provides numpy ufuncs ({detail})")
