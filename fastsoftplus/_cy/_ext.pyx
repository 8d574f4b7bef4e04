# cython: language_level=3, boundscheck=False, wraparound=False, embedsignature=True
"""Compiled core of the "cython" backend: NumPy ufuncs over SIMD loops, ISA and thread control.

Use it through ``fastsoftplus._cython`` (the backend module) or ``fastsoftplus.ufuncs``.

ISA variants: the loops are compiled for AVX-512 ("avx512", x86-64-v4), AVX2+FMA ("avx2",
x86-64-v3) and baseline x86-64 ("baseline"); only "baseline" (portable C) on other platforms. At
import the best variant this CPU supports is chosen. The environment variable
``FASTSOFTPLUS_SIMD=avx512|avx2|baseline`` (read at import) asks for a variant: a request the CPU
cannot run, or an unknown value, gives a ``RuntimeWarning`` and the best variant at or below the
request (or the automatic choice) is used instead - the import never fails over it.

Threads: OpenMP (when the compiler had it) over contiguous ranges, from ``PARALLEL_MIN_N``
elements per inner-loop call on; the ufuncs use the process-wide count of
``set_num_threads``; ``run()`` takes its own count for one call. A forked child never enters
OpenMP (libgomp is not fork-safe): an ``os.register_at_fork`` hook makes it serial.
"""

import os
import warnings

import numpy as np

cimport numpy as cnp
from libc.math cimport INFINITY, copysign, fabs

cnp.import_array()
cnp.import_ufunc()


cdef extern from "fsp_loops.h":
    int FSP_BLOCK
    int FSP_PARALLEL_MIN_N
    int FSP_PARALLEL_GRAIN
    int FSP_MAX_THREADS
    double FSP_STALL_MIN_S
    double FSP_STALL_HOLDOFF_MIN_S
    double FSP_STALL_HOLDOFF_MAX_S
    int FSP_NUFUNC_LOOPS
    ctypedef void (*fsp_ufunc_loop_fn)(char **, cnp.npy_intp *, cnp.npy_intp *, void *)
    fsp_ufunc_loop_fn *fsp_ufunc_funcs(int func)
    void **fsp_ufunc_data(int func)
    char *fsp_ufunc_types(int func)
    int fsp_ufunc_nin(int func)
    int fsp_nvariants()
    const char *fsp_variant_name(int v)
    int fsp_variant_supported(int v)
    int fsp_get_variant()
    void fsp_set_variant(int v)
    void fsp_tls_set(int nthreads, int variant)
    int fsp_tls_nthreads()
    int fsp_tls_variant()
    int fsp_last_team_size()
    void fsp_set_num_threads(int n)
    int fsp_get_num_threads()
    void fsp_set_serial_only(int on)
    int fsp_get_serial_only()
    int fsp_have_openmp()
    void fsp_guard_note(double work_s, double wait_s, int nthreads)
    void fsp_guard_stats(long long *stalls, long long *serial_calls, double *holdoff_s,
                         double *left_s, int *pending)
    void fsp_guard_reset()


#: Elements per block of the strided path (stack buffers).
BLOCK = FSP_BLOCK
#: No threads below this many elements per inner-loop call (provisional, see fsp_loops.h).
PARALLEL_MIN_N = FSP_PARALLEL_MIN_N
#: Minimum elements per thread.
PARALLEL_GRAIN = FSP_PARALLEL_GRAIN
#: Upper bound on the threads of one call.
MAX_THREADS = FSP_MAX_THREADS
#: The OpenMP stall guard's constants (fsp_loops.h): a stall, the shortest and longest holdoff.
STALL_MIN_S = FSP_STALL_MIN_S
STALL_HOLDOFF_MIN_S = FSP_STALL_HOLDOFF_MIN_S
STALL_HOLDOFF_MAX_S = FSP_STALL_HOLDOFF_MAX_S
#: True when built with OpenMP.
openmp = bool(fsp_have_openmp())
#: Every variant compiled in, best first.
VARIANTS = tuple(fsp_variant_name(i).decode() for i in range(fsp_nvariants()))

ENV_SIMD = "FASTSOFTPLUS_SIMD"

FUNCS = ("softplus", "softplus_grad", "softplus_backward", "softplus_inverse")

_DOCS = {
    "softplus": """Softplus, as torch.nn.functional.softplus.

softplus(x, beta, threshold) = x where beta*x > threshold, else log1p(exp(beta*x)) / beta,
computed stably (no overflow: threshold=inf gives the exact softplus everywhere).

Parameters
----------
x : array_like
beta : array_like
    Scale, > 0.
threshold : array_like
    Linear above beta*x > threshold; math.inf for no cut-off.

Returns
-------
y : ndarray
    float16/float32/float64 as the input (float16 is computed in float32).
""",
    "softplus_grad": """Derivative of softplus with respect to x.

softplus_grad(x, beta, threshold) = 1 where beta*x > threshold, else sigmoid(beta*x).

Parameters
----------
x : array_like
beta : array_like
    Scale, > 0.
threshold : array_like
    math.inf for no cut-off.

Returns
-------
dydx : ndarray
""",
    "softplus_backward": """Backward pass of softplus: grad_output * softplus_grad(x), fused.

Parameters
----------
grad_output : array_like
x : array_like
beta : array_like
    Scale, > 0.
threshold : array_like
    math.inf for no cut-off.

Returns
-------
grad_input : ndarray
""",
    "softplus_inverse": """Inverse of softplus.

softplus_inverse(y, beta, threshold) = y where beta*y > threshold, else
log(expm1(beta*y)) / beta; NaN for y <= 0.

Parameters
----------
y : array_like
beta : array_like
    Scale, > 0.
threshold : array_like
    math.inf for no cut-off.

Returns
-------
x : ndarray
""",
}

# PyUFunc_FromFuncAndData keeps the name and doc pointers: the bytes must live as long as the
# ufuncs (the module's lifetime).
_KEEPALIVE = []


cdef object _make_ufunc(int func, str name):
    name_b = name.encode()
    doc_b = _DOCS[name].encode()
    _KEEPALIVE.append((name_b, doc_b))
    return cnp.PyUFunc_FromFuncAndData(
        <cnp.PyUFuncGenericFunction *>fsp_ufunc_funcs(func), fsp_ufunc_data(func),
        fsp_ufunc_types(func), FSP_NUFUNC_LOOPS, fsp_ufunc_nin(func), 1, cnp.PyUFunc_None,
        <char *>name_b, <char *>doc_b, 0)


softplus = _make_ufunc(0, "softplus")
softplus_grad = _make_ufunc(1, "softplus_grad")
softplus_backward = _make_ufunc(2, "softplus_backward")
softplus_inverse = _make_ufunc(3, "softplus_inverse")

#: The four ufuncs keyed by function name.
UFUNCS = {"softplus": softplus, "softplus_grad": softplus_grad,
          "softplus_backward": softplus_backward, "softplus_inverse": softplus_inverse}


# ---- ISA variants ------------------------------------------------------------------------------

def supported_simd():
    """Return the compiled variants this CPU can run, best first (always ends with "baseline")."""
    return tuple(name for i, name in enumerate(VARIANTS) if fsp_variant_supported(i))


def get_simd():
    """Return the name of the variant the ufuncs use."""
    return VARIANTS[fsp_get_variant()]


cdef int _variant_index(name) except -2:
    """Index of a supported variant; ValueError naming the choices otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"simd must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in VARIANTS:
        raise ValueError(f"unknown SIMD variant {name!r}; compiled variants: "
                         f"{', '.join(VARIANTS)}")
    i = VARIANTS.index(key)
    if not fsp_variant_supported(i):
        raise ValueError(f"SIMD variant {key!r} is not supported by this CPU; supported: "
                         f"{', '.join(supported_simd())}")
    return i


def set_simd(name):
    """Make the ufuncs use variant `name` (one of ``supported_simd()``); process-wide.

    Meant for tests and benchmarks. Raises ``ValueError`` for an unknown or unsupported variant.
    """
    fsp_set_variant(_variant_index(name))


def _select_at_import():
    best = supported_simd()[0]
    request = os.environ.get(ENV_SIMD, "").strip().lower()
    if request in ("", "auto"):
        return best
    if request not in ("avx512", "avx2", "baseline"):
        warnings.warn(f"{ENV_SIMD}={request!r} is not one of avx512, avx2, baseline, auto; "
                      f"using {best!r}", RuntimeWarning, stacklevel=2)
        return best
    if request in VARIANTS and fsp_variant_supported(VARIANTS.index(request)):
        return request
    # Not compiled in (non-x86 build) or not supported by this CPU: the best one below it.
    order = ("avx512", "avx2", "baseline")
    lower = [v for v in supported_simd() if order.index(v) > order.index(request)]
    chosen = lower[0] if lower else "baseline"
    warnings.warn(f"{ENV_SIMD}={request!r} is not available on this machine (supported: "
                  f"{', '.join(supported_simd())}); using {chosen!r}", RuntimeWarning,
                  stacklevel=2)
    return chosen


fsp_set_variant(VARIANTS.index(_select_at_import()))


# ---- threads -----------------------------------------------------------------------------------

def _usable_cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_num_threads(n):
    """Set the thread count of the ufuncs (process-wide); any integer >= 1.

    ``fastsoftplus.set_num_threads`` forwards here. Counts above ``MAX_THREADS`` are cut to it
    at run time; each thread gets at least ``PARALLEL_GRAIN`` elements.
    """
    if isinstance(n, bool) or not hasattr(type(n), "__index__"):
        raise TypeError(f"n must be an integer >= 1, got {type(n).__name__}")
    n = n.__index__()
    if n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n}")
    fsp_set_num_threads(min(n, 2**31 - 1))


def get_num_threads():
    """Return the thread count of the ufuncs (default: the usable cores)."""
    return fsp_get_num_threads()


def serial_only():
    """True in a forked child (of a process that had this module loaded): OpenMP is off."""
    return bool(fsp_get_serial_only())


def _after_fork_in_child():
    # libgomp's thread pool does not survive fork(): a child entering a parallel region after the
    # parent used one hangs. The child computes serially from now on.
    fsp_set_serial_only(1)


fsp_set_num_threads(_usable_cores())
os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- one call with explicit threads / variant --------------------------------------------------

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def run(str func, tuple arrays, out, double beta, double threshold, nthreads, simd=None):
    """Compute ``func(*arrays, beta, threshold)`` into `out` through the ufunc.

    `nthreads` (and `simd`, a name from ``supported_simd()``, if given) apply to this call only:
    they are per-OS-thread overrides set around the ufunc call, so concurrent calls from other
    Python threads are not affected. `out` must be float32 or float64; the arrays broadcast to it.
    beta and threshold are rounded to out's precision here (a C conversion: out-of-range values
    become inf without a NumPy overflow warning).
    """
    cdef int variant = -1
    cdef int old_n, old_v
    cdef int nt = <int>min(max(nthreads.__index__(), 1), 2**31 - 1)
    cdef float b32, t32
    uf = UFUNCS[func]
    if simd is not None:
        variant = _variant_index(simd)
    dt = out.dtype
    if dt == _F32:
        b32 = <float>beta
        t32 = <float>threshold
        b = np.float32(b32)
        t = np.float32(t32)
    elif dt == _F64:
        b = np.float64(beta)
        t = np.float64(threshold)
    else:
        raise TypeError(f"out must be float32 or float64, got {dt}")
    old_n = fsp_tls_nthreads()
    old_v = fsp_tls_variant()
    fsp_tls_set(nt, variant)
    try:
        uf(*arrays, b, t, out=out)
    finally:
        fsp_tls_set(old_n, old_v)


def stall_guard():
    """The OpenMP stall guard's state (fsp_loops.c): ``stalls`` (threaded calls whose caller waited
    at the closing barrier longer than it computed), ``serial_calls`` (threaded calls run on one
    thread since, in a holdoff), ``holdoff_s`` (the next unpaid stall's holdoff), ``left_s``
    (seconds left of the current holdoff, <= 0 when none) and ``pending`` (a holdoff was set and
    no call has probed the threads since). All zero without OpenMP."""
    cdef long long stalls = 0, serial_calls = 0
    cdef double holdoff = 0.0, left = 0.0
    cdef int pending = 0
    fsp_guard_stats(&stalls, &serial_calls, &holdoff, &left, &pending)
    return {"stalls": stalls, "serial_calls": serial_calls, "holdoff_s": holdoff, "left_s": left,
            "pending": bool(pending)}


def _guard_note(double work_s, double wait_s, int nthreads=2):
    """Testing hook: record a threaded call as fsp_run does (its caller computed `work_s` seconds,
    then waited `wait_s` at the closing barrier of a team of `nthreads`)."""
    fsp_guard_note(work_s, wait_s, nthreads)


def _guard_reset():
    """Testing hook: no holdoff, counters at zero."""
    fsp_guard_reset()


def _set_serial_only(on):
    """Testing hook: force (or lift) the forked-child serial mode in this process."""
    fsp_set_serial_only(1 if on else 0)


def _last_team_size():
    """Testing hook: threads that ran the last inner-loop call made from this OS thread."""
    return fsp_last_team_size()


ctypedef void (*_loop_nogil)(char **, cnp.npy_intp *, cnp.npy_intp *, void *) noexcept nogil

# _contig releases the GIL above this many elements: NumPy's own rule for ufunc loops
# (NPY_BEGIN_THREADS_THRESHOLDED), so other Python threads run meanwhile, as through the ufunc.
cdef cnp.npy_intp _NOGIL_ABOVE = 500


cdef bint _partial_overlap(cnp.ndarray a, cnp.ndarray b):
    """a and b (C-contiguous, same size) share memory but do not coincide."""
    cdef char *pa = <char *>cnp.PyArray_DATA(a)
    cdef char *pb = <char *>cnp.PyArray_DATA(b)
    cdef cnp.npy_intp n = cnp.PyArray_NBYTES(a)
    return pa != pb and pa < pb + n and pb < pa + n


cdef object _contig(int func, cnp.ndarray x, double beta, double threshold, object g, object out):
    """``func(x, beta, threshold)`` (``func(g, x, ...)`` for backward) straight through the ufunc's
    inner loop, without NumPy's ufunc machinery (~3 us less per call). x (and g) are C-contiguous
    native float32/float64 arrays of one dtype and shape (the callers check). Returns `out` (a new
    array if None), or None, computing nothing, when `out` is not a writeable C-contiguous ndarray
    of x's dtype and shape or overlaps x or g partially. One thread below PARALLEL_MIN_N elements
    (as every inner-loop call); the GIL is released above _NOGIL_ABOVE elements, as NumPy does."""
    cdef int idx
    cdef float b32, t32
    cdef double b64, t64
    cdef char *args[5]
    cdef cnp.npy_intp steps[5]
    cdef cnp.npy_intp n = x.size
    cdef cnp.ndarray o
    if out is None:
        o = np.empty_like(x)
    else:
        if type(out) is not np.ndarray:
            return None
        o = <cnp.ndarray>out
        if (o.dtype is not x.dtype or not cnp.PyArray_IS_C_CONTIGUOUS(o)
                or not cnp.PyArray_ISWRITEABLE(o) or not cnp.PyArray_SAMESHAPE(o, x)
                or _partial_overlap(o, x)
                or (g is not None and _partial_overlap(o, <cnp.ndarray>g))):
            return None
    cdef int nin = fsp_ufunc_nin(func)
    cdef int k = 0
    cdef _loop_nogil loop
    cdef void *data
    if nin == 4 and g is None:
        raise TypeError("_contig: backward needs g")
    cdef cnp.npy_intp item = x.itemsize
    if x.dtype == _F32:
        idx = 2
        b32 = <float>beta
        t32 = <float>threshold
        args[nin - 2] = <char *>&b32
        args[nin - 1] = <char *>&t32
    else:
        idx = 3
        b64 = beta
        t64 = threshold
        args[nin - 2] = <char *>&b64
        args[nin - 1] = <char *>&t64
    if nin == 4:
        args[0] = <char *>cnp.PyArray_DATA(<cnp.ndarray>g)
        steps[0] = item
        k = 1
    args[k] = <char *>cnp.PyArray_DATA(x)
    steps[k] = item
    steps[nin - 2] = 0
    steps[nin - 1] = 0
    args[nin] = <char *>cnp.PyArray_DATA(o)
    steps[nin] = item
    loop = <_loop_nogil>fsp_ufunc_funcs(func)[idx]
    data = fsp_ufunc_data(func)[idx]
    if n > _NOGIL_ABOVE:
        with nogil:
            loop(args, &n, steps, data)
    else:
        loop(args, &n, steps, data)
    return o


# ---- the API's fast path ------------------------------------------------------------------------
# Set by fastsoftplus._dispatch (configure_fast) when this backend loads and again once the
# automatic choice is settled.
cdef object _dispatch = None       # the dispatcher module: its global default is read per call
cdef object _override_var = None   # its use_backend() ContextVar
cdef object _no_override = None    # that variable's value outside any use_backend() block
cdef cnp.npy_intp _auto_limit = 0  # below it the automatic choice is this backend on one thread
cdef cnp.npy_intp _forced_limit = 0  # backend="cython": one thread below it
cdef double _f32_overflow = 0.0    # |threshold| from which float32(threshold) is inf
cdef object _numba_fast = None     # numba's fast path (_numba.fast) once numba is loaded


def configure_fast(dispatch, cnp.npy_intp auto_limit, cnp.npy_intp forced_limit,
                   double f32_overflow, numba_fast=None):
    """Give `fast` the dispatcher module and the size limits (auto_limit 0: automatic calls
    never take the fast path), and numba's fast path for calls forced onto numba."""
    global _dispatch, _override_var, _no_override, _auto_limit, _forced_limit, _f32_overflow
    global _numba_fast
    _numba_fast = numba_fast
    _override_var = dispatch._override
    _no_override = dispatch._NO_OVERRIDE
    _auto_limit = auto_limit
    _forced_limit = forced_limit
    _f32_overflow = f32_overflow
    _dispatch = dispatch


def fast(int func, x, beta, threshold, g, out, backend):
    """The API's fast path: `func` (0 softplus, 1 grad, 2 backward (g, x), 3 inverse) computed
    by `_contig` when the call is of the plain kind, else None (nothing computed or written).

    That kind: the backend that applies (`backend`; without it, no use_backend() block in force
    and the global default, set_backend() or FASTSOFTPLUS_BACKEND) is None and the size below the
    automatic limit, or it is "cython" and the size below the forced limit (one thread either
    way); beta the float 1.0; threshold a float (not NaN) or None; x (and g) a C-contiguous
    native float32/float64 ndarray with at least one dimension (g: same dtype and shape); `out`
    None or a writeable C-contiguous array of x's dtype and shape that is x (or g) or does not
    overlap them. Such a call passes every check of the general path (``_api._apply``), so
    skipping them changes nothing but the time. A call whose backend is "numba" is handed to
    numba's fast path (``_numba.fast``, the same contract) once that backend is loaded."""
    cdef cnp.npy_intp limit
    cdef double t
    cdef cnp.ndarray a, ga
    if backend is None:
        if _dispatch is None or _override_var.get() is not _no_override:
            return None
        backend = _dispatch._global_default  # set_backend() / FASTSOFTPLUS_BACKEND
    if backend is None:
        limit = _auto_limit
    elif backend == "cython":
        limit = _forced_limit
    elif backend == "numba" and _numba_fast is not None:  # set_backend("numba"), backend="numba"
        return _numba_fast(func, x, beta, threshold, g, out, backend)
    else:
        return None
    if type(x) is not np.ndarray or type(beta) is not float or <double>beta != 1.0:
        return None
    if threshold is None:
        t = INFINITY
    elif type(threshold) is float and threshold == threshold:
        t = <double>threshold
    else:
        return None
    a = <cnp.ndarray>x
    dt = a.dtype
    if ((dt is not _F32 and dt is not _F64) or a.ndim == 0 or a.size >= limit
            or not cnp.PyArray_IS_C_CONTIGUOUS(a)):
        return None
    if dt is _F32 and fabs(t) >= _f32_overflow:
        t = copysign(INFINITY, t)  # as float32(threshold), without a double -> float overflow
    if func == 2:
        if type(g) is not np.ndarray:
            return None
        ga = <cnp.ndarray>g
        if (ga.dtype is not dt or not cnp.PyArray_SAMESHAPE(ga, a)
                or not cnp.PyArray_IS_C_CONTIGUOUS(ga)):
            return None
    else:
        g = None
    return _contig(func, a, 1.0, t, g, out)
