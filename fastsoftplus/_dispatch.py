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
4. the automatic choice (``_auto``): by function, dtype, size, layout, thread count and what is
   installed; the crossovers it uses are below, each with how it was measured.

Availability is decided once per process (the first time a backend is needed) and cached.
``FASTSOFTPLUS_DISABLE`` and ``FASTSOFTPLUS_BACKEND`` are read when this module is imported.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import sys
import threading
from types import ModuleType
from typing import Callable, Iterator, NamedTuple

import numpy as np

from . import _constants
from ._threads import get_num_threads

#: The registry, in preference order (the automatic choice takes the first that is available).
BACKENDS: dict[str, str] = {
    "cython": "fastsoftplus._cython",
    "numba": "fastsoftplus._numba",
    "numpy": "fastsoftplus._reference",
}

FUNCS = ("softplus", "softplus_grad", "softplus_backward", "softplus_inverse")

# --- Crossovers ----------------------------------------------------------------------------------
# Measured on the project's machine (2-core AMD EPYC VM, AVX-512; numba 0.68 with tbb 2023.2),
# idle (other processes < 0.1 CPU during each run, checked from /proc/stat), with the benchmark
# suite's serial-vs-threads grid (each backend's run() with 1 and 2 threads, 4096..16M elements,
# all four functions, both dtypes; the extension rebuilt with PARALLEL_MIN_N = 1024 so the C
# loops' own gate did not hide threads):
#     python -m pytest benchmarks/test_bench_threads.py --bench-crossover --benchmark-json=x.json
#     python benchmarks/report.py x.json --crossover
# Times below are numba/cython (< 1: numba faster), 1 thread | 2 threads, n >= 16384.

# On the Intel Xeon CI machine the grid ran once while another process kept one core busy: the
# cython (OpenMP) threaded calls took 13.6x, 34.6x and 84.8x their serial time at three sizes
# (262144, 32768, 32768), numba's (tbb) at most 1.6x: why the C loops have a stall guard (see
# the threaded-call rule below).

#: Below this many elements a call runs on one thread (every backend; the Cython loops apply it
#: too): defined in _constants.py. Measured: 2 threads beat 1 at the smallest size where the loops
#: can split (32768: two blocks of 16384), by 0.52-0.60x (cython) and 0.61-0.86x (numba/tbb),
#: for every function and dtype.
PARALLEL_MIN_SIZE = _constants.PARALLEL_MIN_N

#: numba's "workqueue" threading layer (the one numba gets when the tbb package is missing) wakes
#: its workers slowly here: 2 threads took 4.2x (32768), 1.5x (262144), 1.3x (1e6) the serial time
#: for float32, 0.74x at 4e6; float64 (2.4x the work per element) 0.65x from 262144. Below these
#: sizes a numba call on that layer runs serially.
NUMBA_WORKQUEUE_MIN_SIZE = {"float32": 1 << 21, "float64": 1 << 18}

#: Below this many elements the automatic choice takes cython: numba's run() costs a few us more
#: per call (numba/cython 1.17 at 4096, 1.02 at 8192, 0.94 at 16384, float32 softplus serial).
NUMBA_MIN_SIZE = 1 << 14

#: (func, dtype) where numba's kernels are slower than the C ones: the automatic choice keeps
#: cython there. Serial numba/cython from 16384: softplus 0.85-1.00 (f32), 0.87-0.94 (f64); grad
#: 0.86-0.97, 0.77-0.88; backward 0.90-1.10, 0.74-0.82; inverse 1.19-1.22 (f32), 0.89-0.94 (f64).
#: With 2 threads numba (tbb) is within 0.78-1.11 of cython from 262144 (inverse f32 1.10-1.17),
#: 1.05-1.85 below (tbb's start-up costs more than an OpenMP team's). Re-measured after the
#: float32 beta == 1 kernels (commit c4f00ee), same grid, quiet machine.
#: The same grid on the Intel Xeon CI machine (LLVM host CPU "rocketlake"), with numba's loops
#: on 512-bit vectors (_nbkernels.wide_vectors): serial numba/cython from 65536: softplus
#: 0.87-1.03 (f32), 0.75-0.93 (f64); grad 0.73-1.00, 0.78-0.88; backward 1.00-1.17 (f32),
#: 0.80-0.89; inverse 0.98-1.64 (f32), 0.59-1.19; 2 threads from 1048576 0.72-1.18, below
#: 1.1-2.7 (f32) / 0.75-1.19 (f64). Same rules: the one exception, backward float32 serial, is
#: within 17%. Before wide_vectors (ymm only) numba was 1.2-1.5x slower everywhere there.
NUMBA_SLOWER = frozenset({("softplus_inverse", "float32")})

#: dtypes whose serial calls from NUMBA_MIN_SIZE go to numba: none now. The same grid on the
#: Intel Xeon after the leaner float32 C kernels (commit c9bd08b), serial numba/cython from
#: 65536: float32 softplus 0.96-1.25 (median 1.02), grad 0.91-1.22 (0.99), backward 0.96-1.14
#: (1.07); float64 softplus 0.86-0.92, grad 0.81-0.98, backward 0.84-1.02, inverse 0.94-0.98:
#: float64 went to numba. After the C loops' two interleaved streams (commit cf9fdc1), two runs
#: of the grid: float64 softplus 0.87-1.18 (medians 0.98, 1.03), grad 0.92-1.13 (0.99, 1.07),
#: backward 0.82-1.17 (1.01, 1.01), inverse 0.95-1.39 (1.17, 1.18); float32 medians 0.96-1.21.
#: numba is no faster for either dtype, so serial calls stay with cython (and its smaller call
#: overhead, and its fast path up to PARALLEL_MIN_SIZE).
NUMBA_SERIAL_DTYPES: frozenset[str] = frozenset()

# Threaded calls go to cython (OpenMP) wherever its loops can run threads (compiled with
# OpenMP, not a forked child); to numba only where they cannot and numba runs on tbb. An OpenMP
# team ends at a barrier where the caller waits for a worker the OS has not run yet (another
# process on its core): ~8 ms per call whatever its size. The C loops' stall guard (fsp_loops.c,
# fsp_run) detects such a call (the caller waited longer than it computed) and, unless the
# threaded calls since the previous stall saved more than it cost, runs the next threaded calls
# on one thread for a holdoff (50 ms, doubling to 2 s while stalls repeat), so the faster
# OpenMP loops serve every size. Measured (``python benchmarks/contention.py``: softplus,
# 2 threads, median of ~1.5 s of calls / the serial time, idle | another process spinning on one
# of the 2 cores, cython vs numba/tbb): float32 1e5 0.54 vs 0.82 | 1.01 vs 1.35 (before the
# guard cython 0.54 | 47.8), 1e6 0.54 vs 0.69 | 1.00 vs 1.19 (0.56 | 3.38), 1e7 0.51 vs 0.55 |
# 0.68 vs 0.92; float64 1e5 0.51 vs 0.67 | 0.96 vs 1.11, 1e6 0.44 vs 1.20 | 1.00 vs 1.18, 1e7
# 0.52 vs 0.65 | 0.74 vs 1.03. From commit a6cf946 until the stall guard, threaded calls below
# 2**23 float32 / 2**21 float64 elements went to numba/tbb, whose caller never waits for a
# worker that has not started (before a6cf946: all of them).

#: Layouts numba handles only through its parallel ufunc (one kernel call per element, no SIMD):
#: 4-5x slower than cython's blocked strided loops (x[::2], 1.6e4..1e6, 1 and 2 threads), so a
#: non-contiguous input goes to cython.

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
_auto_cache: tuple[str, str] | None = None  # the fixed choice when only one backend is usable
_auto_ready = False  # _auto_cache is decided (None then: both compiled backends are available)


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
        if name in ("cython", "numba"):
            _configure_fast()
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


def _numba_layer() -> str:
    """numba's threading layer ("tbb", "workqueue", "omp", ...), without starting it."""
    global _numba_layer_cache, _numba_layer_final
    if _numba_layer_final is not None:
        return _numba_layer_final
    mod = _modules.get("numba")
    if mod is None:
        return "none"
    started = getattr(mod, "_layer", None)
    if started is not None:  # final once the pool runs
        _numba_layer_final = started.split(" ")[0]
        return _numba_layer_final
    if _numba_layer_cache is None:
        try:
            _numba_layer_cache = str(mod._planned_layer()).split(" ")[0]
        except Exception:  # an older/other numba backend: assume the slow-to-wake layer
            _numba_layer_cache = "workqueue"
    return _numba_layer_cache


_numba_layer_cache: str | None = None  # the planned layer, before numba's pool starts
_numba_layer_final: str | None = None  # the layer in use, once started


def parallel_min_size(name: str, dtype: np.dtype) -> int:
    """The size from which backend `name` runs a call of `dtype` (float32/float64) on more than
    one thread (for ``explain`` and tests that want the threaded paths)."""
    if name == "numba" and _numba_layer() == "workqueue":
        return NUMBA_WORKQUEUE_MIN_SIZE["float32" if dtype.itemsize == 4 else "float64"]
    return PARALLEL_MIN_SIZE


# The automatic choice's reasons (constant strings: choose() runs on every call).
_R_SMALL = f"automatic: n < NUMBA_MIN_SIZE={NUMBA_MIN_SIZE} (least call overhead)"
_R_STRIDED = "automatic: non-contiguous input (numba's strided path is 4-5x slower)"
_R_SLOWER = "automatic: {} {} is in NUMBA_SLOWER (numba's kernel measured slower)"
_R_SERIAL = (f"automatic: serial call, n >= NUMBA_MIN_SIZE={NUMBA_MIN_SIZE}, dtype in "
             f"NUMBA_SERIAL_DTYPES (numba's kernels measured faster)")
_R_SERIAL_C = "automatic: serial {} call (numba's loops are no faster there: NUMBA_SERIAL_DTYPES)"
_R_OPENMP = ("automatic: threaded call, cython's OpenMP loops (faster than numba/tbb at every "
             "size; their stall guard runs one thread while other processes hold the cores)")
_R_TBB = ("automatic: threaded call, cython cannot run threads here (no OpenMP or a forked "
          "child): numba on tbb")
_R_NOT_TBB = ("automatic: threaded call, cython cannot run threads here and numba's threading "
              "layer is {}, not tbb")


def _auto(func: str, dtype, size: int, contiguous: bool, threaded: bool) -> tuple[str, str]:
    """The automatic choice: (backend name, the rule that chose it).

    cython below ``NUMBA_MIN_SIZE``, for non-contiguous inputs, for ``NUMBA_SLOWER``, for
    serial calls (numba only for dtypes in ``NUMBA_SERIAL_DTYPES``, where its kernels measured
    faster: none at present) and for threaded calls where its loops can run threads (OpenMP);
    numba for threaded calls where they cannot and numba's threading layer is tbb. Whatever is
    installed otherwise.
    """
    global _auto_cache, _auto_ready
    if not _auto_ready:
        names = available_backends()
        if not names:  # only if "numpy" itself is disabled
            raise BackendUnavailableError("numpy", unavailable_reasons().get("numpy", "?"))
        only = None
        if not ("cython" in names and "numba" in names):
            missing = "; ".join(f"{n} unavailable: {r}" for n, r in unavailable_reasons().items()
                                if n != "numpy")
            what = "the only compiled backend available" if names[0] != "numpy" else "the reference"
            only = (names[0], f"automatic: {what} ({missing})")
        _auto_cache = only
        _auto_ready = True
        _configure_fast()
    if _auto_cache is not None:
        return _auto_cache
    if size < NUMBA_MIN_SIZE:
        return "cython", _R_SMALL
    if not contiguous:
        return "cython", _R_STRIDED
    dt = "float32" if dtype.itemsize == 4 else "float64"
    if (func, dt) in NUMBA_SLOWER:
        return "cython", _R_SLOWER.format(func, dt)
    if not threaded:
        if dt in NUMBA_SERIAL_DTYPES:
            return "numba", _R_SERIAL
        return "cython", _R_SERIAL_C.format(dt)
    if getattr(_modules["cython"], "threads_usable", lambda: False)():
        return "cython", _R_OPENMP
    layer = _numba_layer()
    if layer == "tbb":
        return "numba", _R_TBB
    return "cython", _R_NOT_TBB.format(layer)


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
            nthreads = 1 if size < PARALLEL_MIN_SIZE else get_num_threads()
            name, auto_rule = _auto(func, dtype, size, contiguous, nthreads > 1)
            rule = auto_rule if rule is None else f"{rule}: {auto_rule}"
            mod = _modules[name]
        else:
            mod = backend_module(name, BACKEND_ENV if rule == BACKEND_ENV else "backend")
    nthreads = 1 if size < PARALLEL_MIN_SIZE else get_num_threads()
    if nthreads > 1 and name == "numba" and size < parallel_min_size(name, dtype):
        nthreads = 1
    return Choice(name, mod, nthreads, rule)


def _configure_fast() -> None:
    """Tell the cython backend's fast path (``_ext.fast``) when it may serve a call: automatic
    calls below ``fast_auto_limit()`` elements if the automatic choice gives them to cython,
    ``backend="cython"`` below ``PARALLEL_MIN_SIZE`` (one thread); calls that resolve to numba
    go to numba's fast path (``_numba.fast``). Called when the cython or numba
    backend loads and again when the automatic choice is settled; the global default and the
    ``use_backend`` variable of this module are read by the C side on every call."""
    mod = _modules.get("cython")
    configure = getattr(mod, "configure_fast", None)
    if configure is None:
        return
    try:
        _resolve_global()  # _global_default: a name or None from here on
    except ValueError:  # a bad FASTSOFTPLUS_BACKEND: reported by choose(); no fast path
        return
    auto = _auto_ready and (_auto_cache is None or _auto_cache[0] == "cython")
    configure(sys.modules[__name__], fast_auto_limit() if auto else 0, PARALLEL_MIN_SIZE,
              _constants.F32_OVERFLOW, getattr(_modules.get("numba"), "fast", None))


def fast_auto_limit() -> int:
    """Below this size an automatic contiguous call is cython's on one thread (when both compiled
    backends load): the cython fast path's limit for automatic calls."""
    return PARALLEL_MIN_SIZE if not NUMBA_SERIAL_DTYPES else min(NUMBA_MIN_SIZE, PARALLEL_MIN_SIZE)


def fast_entry(chosen: str) -> Callable[..., np.ndarray | None] | None:
    """The API's fast-path function, given the backend `chosen` for a call: the cython backend's
    once it is loaded; numba's where cython cannot load (it serves only calls that numba runs;
    cython's load is tried then, as the automatic choice would); else None (asked again on the
    next call)."""
    if chosen == "numba" and "cython" not in _modules:
        _load("cython")
    cy = _modules.get("cython")
    if cy is not None:
        return getattr(cy, "fast", None)
    return getattr(_modules.get("numba"), "fast", None) if chosen == "numba" else None


def threads_rule(size: int, name: str | None = None, dtype=None) -> str:
    """Why ``choose`` picks its thread count for ``size`` elements (for ``explain``); with the
    chosen backend `name` and `dtype`, the backend-specific rule too."""
    if size < PARALLEL_MIN_SIZE:
        return f"size {size} < PARALLEL_MIN_SIZE={PARALLEL_MIN_SIZE}"
    if name is not None and dtype is not None and size < parallel_min_size(name, np.dtype(dtype)):
        return (f"size {size} < NUMBA_WORKQUEUE_MIN_SIZE={parallel_min_size(name, np.dtype(dtype))}: "
                f"numba's workqueue threads lose below it")
    holdoff_left = getattr(_modules.get("cython"), "holdoff_left", None)
    if name == "cython" and holdoff_left is not None and get_num_threads() > 1:
        left = holdoff_left()
        if left > 0:
            return (f"get_num_threads(); but one thread for {left:.2f} s more: the stall guard's "
                    f"holdoff after stalled threaded calls")
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
