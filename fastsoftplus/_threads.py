"""The thread count handed to the backends.

One process-global value: ``set_num_threads(n)`` sets it, ``get_num_threads()`` reads it. Its
default is ``FASTSOFTPLUS_NUM_THREADS`` when set (read once, at import; an invalid value raises
``ValueError`` at the first ``get_num_threads()``), else the cores this process may run on
(``os.sched_getaffinity`` where it exists, so a ``taskset``/cgroup CPU set is respected).

Fork safety is each backend's business (the OpenMP/TBB runtimes differ); a backend that must
reset state in a forked child registers ``os.register_at_fork`` itself.
"""

from __future__ import annotations

import operator
import os
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
