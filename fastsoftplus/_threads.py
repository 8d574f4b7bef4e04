"""The thread count handed to the backends, and its place in the threadpoolctl ecosystem.

One process-global value: ``set_num_threads(n)`` sets it, ``get_num_threads()`` reads it. Its
default is ``FASTSOFTPLUS_NUM_THREADS`` when set (read once, at import; an invalid value raises
``ValueError`` at the first ``get_num_threads()``), else the cores this process may run on
(``os.sched_getaffinity`` where it exists, so a ``taskset``/cgroup CPU set is respected).

Who obeys it: every call of the public functions (the dispatcher passes it to the backend per
call), and the C extension's ufuncs (``fastsoftplus.ufuncs`` with the cython backend, the path dask,
pandas and xarray take): ``set_num_threads`` forwards the value to the extension when it is loaded,
and the extension reads it when it loads. The Numba ufuncs called directly (the ufunc backend when
the extension is missing) follow Numba's own per-thread setting instead (``numba.set_num_threads``,
``NUMBA_NUM_THREADS``).

Not obeyed: ``OMP_NUM_THREADS`` and ``threadpoolctl``'s "openmp" limit. The C loops name their
team size explicitly (OpenMP's ``num_threads`` clause), which overrides libgomp's setting.

threadpoolctl. When threadpoolctl (>= 3) is installed, importing fastsoftplus registers a
controller for this setting (user_api and internal_api ``"fastsoftplus"``), so
``threadpoolctl.threadpool_info()`` lists it and ``threadpool_limits(n)`` (no ``user_api``, or
``user_api="fastsoftplus"``, or ``limits={"fastsoftplus": n}``) sets it for the ``with`` block and
restores it after. Like the value itself, the limit is process-wide, not per thread: a
``threadpool_limits`` block in one thread also limits calls made meanwhile in other threads.
threadpoolctl finds controllers through loaded shared libraries; this one anchors to NumPy's core
extension (loaded whenever fastsoftplus is), so it is there whichever backend runs, and reports
the package directory as its ``filepath``.

Fork safety is each backend's business (the OpenMP/TBB runtimes differ); a backend that must
reset state in a forked child registers ``os.register_at_fork`` itself.
"""

from __future__ import annotations

import importlib.util
import operator
import os
import sys
import threading

ENV_VAR = "FASTSOFTPLUS_NUM_THREADS"

_env_value = os.environ.get(ENV_VAR, "").strip()
_lock = threading.Lock()
_num_threads: int | None = None  # None: not set yet (environment or cores decide)


def usable_cores() -> int:
    """Number of CPUs this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _check(n: object, what: str) -> int:
    if isinstance(n, bool) or not hasattr(type(n), "__index__"):
        raise TypeError(f"{what} must be an integer >= 1, got {type(n).__name__} {n!r}")
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {n}")
    return n


def set_num_threads(n: int) -> None:
    """Set the number of threads the backends use for large arrays.

    Parameters
    ----------
    n : int
        Any integer >= 1. More than the cores is allowed: a backend that cannot start that many
        threads uses as many as it can. Process-global: it applies to calls from every thread.

    Raises
    ------
    TypeError
        If `n` is not an integer (bool is refused too).
    ValueError
        If `n` < 1.
    """
    global _num_threads
    n = _check(n, "n")
    with _lock:
        _num_threads = n
        _forward(n)


def get_num_threads() -> int:
    """Return the thread count in force.

    Returns
    -------
    int
        The value of the last ``set_num_threads``; else ``FASTSOFTPLUS_NUM_THREADS``; else the
        number of usable cores.
    """
    global _num_threads
    n = _num_threads
    if n is None:
        with _lock:
            if _num_threads is None:
                if _env_value:
                    try:
                        value = int(_env_value)
                    except ValueError:
                        value = 0
                    if value < 1:
                        raise ValueError(
                            f"{ENV_VAR}={_env_value!r} is not an integer >= 1")
                    _num_threads = value
                else:
                    _num_threads = usable_cores()
            n = _num_threads
    return n


# The C extension's module: its ufuncs keep their own copy of the count (read from here when the
# extension loads, see _cython._sync_thread_count); looked up in sys.modules so that setting the
# count never imports a backend.
_EXT_MODULE = "fastsoftplus._cy._ext"


def _forward(n: int) -> None:
    ext = sys.modules.get(_EXT_MODULE)
    if ext is not None:
        ext.set_num_threads(n)


# --- threadpoolctl -----------------------------------------------------------------------------

#: The basename prefix of NumPy's core extension module (``_multiarray_umath.cpython-...so``,
#: ``...pyd`` on Windows): the shared library the controller anchors to (see the module docstring).
_ANCHOR_PREFIX = "_multiarray_umath"


def _make_controller_class(threadpoolctl):
    """The ``threadpoolctl.LibController`` subclass for the fastsoftplus thread count."""
    class FastsoftplusController(threadpoolctl.LibController):
        """threadpoolctl controller of ``fastsoftplus.set_num_threads`` (process-wide)."""

        user_api = "fastsoftplus"
        internal_api = "fastsoftplus"
        filename_prefixes = (_ANCHOR_PREFIX,)
        check_symbols = ("PyInit__multiarray_umath",)

        def get_num_threads(self):
            try:
                return get_num_threads()
            except ValueError:  # invalid FASTSOFTPLUS_NUM_THREADS: report, do not break info()
                return None

        def set_num_threads(self, num_threads):
            global _num_threads
            if num_threads is None:  # restoring a count that could not be read: unset again
                with _lock:
                    _num_threads = None
            else:
                set_num_threads(max(1, int(num_threads)))

        def get_version(self):
            return getattr(sys.modules.get("fastsoftplus"), "__version__", None)

        def set_additional_attributes(self):
            # Point at what this controls, not at the anchor library.
            self.filepath = os.path.dirname(os.path.abspath(__file__))
            self.prefix = "fastsoftplus"

    return FastsoftplusController


_registered: type | None = None


def register_threadpoolctl() -> bool:
    """Register the threadpoolctl controller (once). False if threadpoolctl is missing or older
    than 3.0 (no ``register``/``LibController``)."""
    global _registered
    if _registered is not None:
        return True
    try:
        import threadpoolctl
    except ImportError:
        return False
    if not (hasattr(threadpoolctl, "register") and hasattr(threadpoolctl, "LibController")):
        return False
    with _lock:
        if _registered is None:
            cls = _make_controller_class(threadpoolctl)
            threadpoolctl.register(cls)
            _registered = cls
    return True


# At import, when threadpoolctl is installed (importing it costs ~3 ms; find_spec alone far less).
if importlib.util.find_spec("threadpoolctl") is not None:
    try:
        register_threadpoolctl()
    except Exception:  # an incompatible threadpoolctl must never break importing fastsoftplus
        pass
