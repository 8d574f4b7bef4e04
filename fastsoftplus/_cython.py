"""The ``"cython"`` backend: SIMD C loops behind real NumPy ufuncs (``fastsoftplus._cy._ext``).

The extension is optional (built by ``setup.py`` when Cython and a C compiler are present). When
it is missing, importing this module raises ``ImportError`` whose message says why; the
dispatcher shows that reason in ``available_backends()``/``info``.

How it computes (details in ``_cy/fsp_loops.c``):

- ISA variants: AVX-512 ("avx512", x86-64-v4), AVX2+FMA ("avx2", x86-64-v3) and baseline x86-64,
  compiled per function and chosen at import with ``__builtin_cpu_supports``; portable C
  ("baseline") elsewhere. ``FASTSOFTPLUS_SIMD=avx512|avx2|baseline`` (read at import) forces a
  lower variant; asking for one the CPU lacks, or an unknown value, warns (``RuntimeWarning``)
  and uses the best supported variant below the request - it never makes the backend unavailable.
- Layouts: contiguous arrays with scalar beta/threshold go straight to the SIMD loop; any other
  strides go through blocks of ``_ext.BLOCK`` elements copied into stack buffers.
- Threads: OpenMP over contiguous ranges when an inner loop has at least ``_ext.PARALLEL_MIN_N``
  elements. ``run()`` uses the ``nthreads`` it is given (per call, per OS thread: no global is
  touched); the ufuncs called directly use ``_ext.get_num_threads()``, which
  ``fastsoftplus.set_num_threads`` is meant to forward to. A forked child computes serially.
  The stall guard (``_ext.stall_guard()``): a threaded call whose caller waited at the team's
  closing barrier longer than it computed (a worker the OS did not run: another process holds
  the core) sends the next calls to one thread for a holdoff (50 ms doubling to 2 s), unless the
  threaded calls since the previous stall saved more time than it cost.
- Floating-point status flags raised inside the loops are discarded, so no NumPy warning appears.
"""

from __future__ import annotations

import numpy as np

NAME = "cython"

try:
    import fastsoftplus._cy._ext as _ext
except ModuleNotFoundError as exc:
    if exc.name not in ("fastsoftplus._cy", "fastsoftplus._cy._ext"):
        raise ImportError(f"the compiled extension fastsoftplus._cy._ext cannot be imported: "
                          f"{exc}") from exc
    raise ImportError(
        "the compiled extension fastsoftplus._cy._ext is not built (it needs Cython>=3 and a C "
        "compiler at install time; rebuild with `pip install -e . --no-build-isolation` or "
        "`python setup.py build_ext --inplace`)") from exc
except ImportError as exc:  # built but unloadable: wrong NumPy ABI, missing libgomp, ...
    raise ImportError(f"the compiled extension fastsoftplus._cy._ext failed to import: "
                      f"{exc}") from exc

#: The four real ufuncs, keyed by function name.
UFUNCS: dict[str, np.ufunc] = dict(_ext.UFUNCS)


def _sync_thread_count() -> None:
    """Start the ufuncs with the package's thread count (if the package module is there)."""
    try:
        from fastsoftplus import _threads
        _ext.set_num_threads(_threads.get_num_threads())
    except (ImportError, AttributeError, ValueError, TypeError):
        pass  # keep the extension's default (usable cores); an invalid env var is reported there


_sync_thread_count()


def run(func: str, arrays: tuple[np.ndarray, ...], out: np.ndarray, beta: float,
        threshold: float, nthreads: int) -> None:
    """Compute `func` of `arrays` into `out` (backend protocol).

    Parameters
    ----------
    func : str
        "softplus", "softplus_grad", "softplus_backward" or "softplus_inverse".
    arrays : tuple of ndarray
        ``(x,)``, or ``(grad_output, x)`` for softplus_backward; float32/float64 like `out`, any
        strides, broadcastable to ``out.shape``; may share memory with `out` (in place).
    out : ndarray
        Writable result array.
    beta : float
        Finite, > 0.
    threshold : float
        ``inf`` for no cut-off.
    nthreads : int
        Threads for this call (>= 1); more than the cores is allowed (capped at
        ``_ext.MAX_THREADS``), and arrays below ``_ext.PARALLEL_MIN_N`` elements use one.
    """
    _ext.run(func, arrays, out, beta, threshold, nthreads)


def info() -> dict[str, str]:
    """Describe the build and the choices in force (for ``python -m fastsoftplus info``)."""
    d = {
        "simd": _ext.get_simd(),
        "simd_supported": ", ".join(_ext.supported_simd()),
        "openmp": "yes" if _ext.openmp else "no",
        "parallel_min_n": str(_ext.PARALLEL_MIN_N),
    }
    if _ext.serial_only():
        d["note"] = "forked child: computes single-threaded (libgomp is not fork-safe)"
    elif _ext.openmp:
        g = _ext.stall_guard()
        left = holdoff_left()
        held = f", one thread for {left:.2f} s more" if left > 0 else ""
        d["stall_guard"] = (f"{g['stalls']} stalled threaded calls, {g['serial_calls']} run on one "
                            f"thread after them{held}")
    return d


def holdoff_left() -> float:
    """Seconds for which the stall guard still runs threaded calls on one thread (0.0: none)."""
    g = _ext.stall_guard()
    return g["left_s"] if g["pending"] and g["left_s"] > 0 else 0.0


def threads_usable() -> bool:
    """True when this backend's calls can run on several threads here (OpenMP compiled in, not
    a forked child)."""
    return bool(_ext.openmp) and not _ext.serial_only()


#: The API's fast path for small plain calls (see ``_ext.fast``); ``configure_fast`` gives it the
#: dispatcher's state. Optional in the backend protocol: only this backend has one.
fast = _ext.fast
configure_fast = _ext.configure_fast
