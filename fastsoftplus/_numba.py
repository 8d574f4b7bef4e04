"""The ``"numba"`` backend: parallel NumPy ufuncs and blocked SIMD kernels, compiled on first use.

The scalar math lives in ``_nbkernels.py`` (``@njit(inline="always")``); this module only wraps it:

- ``softplus``, ``softplus_grad``, ``softplus_backward``, ``softplus_inverse`` (and ``UFUNCS``):
  real ``numpy.ufunc`` objects made by ``numba.vectorize(target="parallel")``, built on first
  attribute access (PEP 562 ``__getattr__``), so they pickle by reference as
  ``fastsoftplus._numba.<name>``. Loops: float32 and float64, signature ``(x, beta, threshold)``
  / ``(g, x, beta, threshold)``.
- ``run()`` (the backend protocol): inputs partially overlapping ``out`` are copied first; then
  operands that are all contiguous in one order, unbroadcast and aligned go to ``@njit`` kernels
  over flat buffers -- serial, or ``parallel=True`` with ``prange`` over blocks of ``BLOCK_SIZE``
  whose inner loop LLVM vectorizes (the parallel ufunc calls the kernel one element at a time, so
  it keeps no SIMD). Everything else (strides, broadcasting) goes to the ufunc with ``out=``.

Importing this module imports numba but compiles nothing, starts no thread and touches no file.

Threading layer. Chosen once, just before the first parallel compile, unless the user chose one
(``NUMBA_THREADING_LAYER`` / ``NUMBA_THREADING_LAYER_PRIORITY`` or ``numba.config``), which is
always honoured: ``tbb`` when libtbb loads (the PyPI ``tbb`` wheel puts ``libtbb.so.12`` in
``<sys.prefix>/lib``, off the loader path, so it is preloaded by absolute path), else
``workqueue``. Never ``omp`` by our choice: GNU OpenMP kills a child forked after the parent used it.
``workqueue`` aborts the process when two threads enter it at once, so in that case every parallel
call of this module is serialized by a lock and the ufuncs are built for the serial ``cpu`` target.

``where=``. Numba-built ufuncs override NumPy's output iterator flags (they drop
``WRITEMASKED``), so ``ufunc(..., where=mask)`` fails with "An iterator operand was flagged as the
ARRAYMASK, but no WRITEMASKED operands were given". After building each ufunc this module resets
those output flags to NumPy's defaults through the documented ``PyUFuncObject`` layout, after
checking that layout against the ufunc's Python-visible attributes; ``where=`` then works as for
any ufunc. Where the check fails (an unknown NumPy layout) nothing is written and ``where=`` keeps
failing with NumPy's message; ``info()["where"]`` says which case holds.

Two more things hold for the raw parallel ufuncs (``run()`` takes care of both): NumPy hands a
ufunc an input that partially overlaps its output (``uf(a[1:], ..., out=a[:-1])``) uncopied,
trusting one forward loop, and numba splits that loop across threads, so such calls can give wrong
values (run() copies such inputs first); and an IEEE flag raised inside the kernel (``beta*x``
overflowing to inf, exp underflowing) surfaces as NumPy's usual RuntimeWarning even where the
result is exact (run() computes under ``np.errstate(all="ignore")``).

Disk cache. ``cache=True`` wherever numba finds a writable cache directory (``NUMBA_CACHE_DIR``,
the package's ``__pycache__``, or the user cache directory); otherwise compilation is redone in
each process. Numba only checks the freshness of the file that defines a function, so a cache
locator adds the hash of ``_nbkernels.py`` and ``_constants.py`` to the stamp: editing a kernel
invalidates the cache. Writes are atomic (temporary file + rename), and every function's index
always receives its signatures in the same order, so processes compiling at once stay consistent.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from . import _api, _dispatch
from ._constants import PLAIN_BLOCK

try:
    import numba
    from numba import prange
except Exception as exc:  # ImportError, or numba refusing this NumPy version (raises on import)
    raise ImportError(f"numba is not importable: {exc}") from exc

_MIN_NUMBA = (0, 57)
if tuple(int(p) for p in numba.__version__.split(".")[:2] if p.isdigit()) < _MIN_NUMBA:
    raise ImportError(f"numba {numba.__version__} is too old (need >= {'.'.join(map(str, _MIN_NUMBA))})")
if numba.config.DISABLE_JIT:
    raise ImportError("NUMBA_DISABLE_JIT is set: the kernels would run as slow pure Python")

NAME = "numba"
FUNCS = ("softplus", "softplus_grad", "softplus_backward", "softplus_inverse")

#: Elements per block of the parallel kernels: the unit of work a thread takes (numba splits the
#: ``prange`` over blocks into contiguous chunks, one per thread). 16384 float64 = 128 KiB in +
#: 128 KiB out stays within L2; a block is ~10 us of kernel time, far above the per-block call
#: overhead. Chosen by that reasoning, not tuned (the shared 2-core machine was too loaded for
#: timing threads); ``run()`` runs a single block in the calling thread. When to use threads at
#: all is the dispatcher's rule (``_dispatch.PARALLEL_MIN_SIZE``): run() honours ``nthreads``.
BLOCK_SIZE = 16384

#: Files whose contents the compiled code depends on besides this one (see the cache locator).
_KERNEL_SOURCES = ("_nbkernels.py", "_constants.py")

_HERE = os.path.dirname(os.path.abspath(__file__))
_THIS_FILE = os.path.abspath(__file__)

# Process-wide state, filled on first use under _state_lock.
_state_lock = threading.RLock()
_parallel_lock = threading.Lock()  # serializes parallel calls under the workqueue layer
_layer: str | None = None  # the threading layer in use, once the pool is launched
_serialize = False  # True under workqueue
_parallel_ok = True  # False when no threading layer could be loaded: everything runs serially
_cache_dir: str | None = None  # where the kernels are cached, "" when caching is off
_cache_note = ""
_kernels: dict[tuple[str, str, str], Any] = {}  # (func, "ser"|"par", "f32"|"f64") -> dispatcher
_ufuncs: dict[str, np.ufunc] = {}
_where_ok: bool | None = None
_keepalive: list = []  # numba objects owning the ufuncs' compiled loops


def _reinit_after_fork() -> None:
    # A fork while another thread holds a lock leaves it held forever in the child.
    global _state_lock, _parallel_lock
    _state_lock = threading.RLock()
    _parallel_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


# --------------------------------------------------------------------------------------------
# Threading layer
# --------------------------------------------------------------------------------------------

def _tbb_library_candidates() -> list[str]:
    if sys.platform.startswith("linux"):
        name = "libtbb.so.12"
    elif sys.platform == "darwin":
        name = "libtbb.12.dylib"
    else:
        return []
    paths = []
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix, sys.base_prefix)):
        paths.append(os.path.join(prefix, "lib", name))
    paths.append(name)  # the loader's own search path last
    return [p for p in paths if os.sep not in p or os.path.exists(p)]


def _preload_tbb() -> bool:
    """Load libtbb globally so numba's ``tbbpool`` extension (which links it) can import."""
    for path in _tbb_library_candidates():
        try:
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            version = lib.TBB_runtime_interface_version
            version.restype = ctypes.c_int
            if version() < 12060:  # numba's own minimum (TBB 2021.6)
                continue
        except (OSError, AttributeError):
            continue
        try:
            from numba.np.ufunc import tbbpool  # noqa: F401  (loads the extension, starts nothing)
        except ImportError:
            return False
        return True
    return False


def _user_chose_layer() -> bool:
    cfg = numba.config
    return ("NUMBA_THREADING_LAYER" in os.environ
            or "NUMBA_THREADING_LAYER_PRIORITY" in os.environ
            or str(cfg.THREADING_LAYER).lower() != "default"
            or list(cfg.THREADING_LAYER_PRIORITY) != ["tbb", "omp", "workqueue"])


def _pool_started() -> bool:
    from numba.np.ufunc import parallel
    return bool(getattr(parallel, "_is_initialized", False))


def _planned_layer() -> str:
    """The layer ``_setup_threading`` would pick, without starting anything."""
    if _layer is not None:
        return _layer
    if _pool_started():
        return numba.threading_layer()
    if _user_chose_layer():
        return f"{numba.config.THREADING_LAYER} (user's choice, not started yet)"
    return ("tbb" if _preload_tbb() else "workqueue") + " (not started yet)"


def _setup_threading() -> None:
    """Fix the threading layer and launch numba's pool (once per process)."""
    global _layer, _serialize, _parallel_ok
    with _state_lock:
        if _layer is not None:
            return
        if not _pool_started():
            have_tbb = _preload_tbb()  # also helps a user's own "tbb"/"default"/"safe" choice
            if not _user_chose_layer():
                numba.config.THREADING_LAYER = "tbb" if have_tbb else "workqueue"
        try:
            numba.get_num_threads()  # launches the pool now, so the layer cannot change later
            _layer = numba.threading_layer()
        except (ValueError, ImportError, OSError) as exc:  # the user's layer cannot load here
            _layer = f"none ({exc})".splitlines()[0]
            _parallel_ok = False
        _serialize = _layer == "workqueue"


@contextlib.contextmanager
def _pool(nthreads: int) -> Iterator[None]:
    """Run a parallel call on ``nthreads`` of numba's threads (numba's setting is per thread)."""
    lock = _parallel_lock if _serialize else contextlib.nullcontext()
    with lock:
        previous = numba.get_num_threads()
        numba.set_num_threads(nthreads)
        try:
            yield
        finally:
            numba.set_num_threads(previous)


# --------------------------------------------------------------------------------------------
# Disk cache: numba's locator, with the kernel sources folded into the freshness stamp
# --------------------------------------------------------------------------------------------

def _kernel_digest() -> str:
    h = hashlib.sha256()
    for name in _KERNEL_SOURCES:
        path = os.path.join(_HERE, name)
        h.update(name.encode())
        try:
            with open(path, "rb") as f:
                h.update(f.read())
        except OSError:
            h.update(b"<missing>")
    return h.hexdigest()


def _install_cache_locator() -> bool:
    """Put a locator in front of numba's for this file only; False if numba's internals differ."""
    try:
        from numba.core import caching
        base = caching._CacheLocator
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # renamed in numba 0.6x
        standard = list(impl._locator_classes)
    except (ImportError, AttributeError):
        return False
    if any(getattr(c, "_fastsoftplus", False) for c in standard):
        return True
    digest = _kernel_digest()

    class _KernelAwareLocator(base):
        """numba's own choice of directory; stamp = (this file's stamp, kernel sources' hash)."""
        _fastsoftplus = True

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def ensure_cache_path(self) -> None:
            self._inner.ensure_cache_path()

        def get_cache_path(self) -> str:
            return self._inner.get_cache_path()

        def get_source_stamp(self) -> Any:
            return (self._inner.get_source_stamp(), digest)

        def get_disambiguator(self) -> str:
            return self._inner.get_disambiguator()

        @classmethod
        def from_function(cls, py_func: Callable, py_file: str) -> Any:
            if os.path.abspath(py_file) != _THIS_FILE:
                return None
            for other in standard:
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
            return None

    impl._locator_classes = [_KernelAwareLocator, *standard]
    return True


def _decide_cache() -> None:
    """Set ``_cache_dir``: numba's directory for this file, or "" (off) when none is writable."""
    global _cache_dir, _cache_note
    if _cache_dir is not None:
        return
    if getattr(numba.config, "CACHE_LOCATOR_CLASSES", None):
        # The user's locators replace ours, and with them the tracking of the kernel sources.
        _cache_dir, _cache_note = "", "off (NUMBA_CACHE_LOCATOR_CLASSES is set)"
        return
    if not _install_cache_locator():
        _cache_dir, _cache_note = "", "off (numba's cache internals changed; kernels recompile)"
        return
    try:
        from numba.core.caching import FunctionCache
        _cache_dir = FunctionCache(_ser_softplus).cache_path
    except Exception as exc:  # RuntimeError: no locator found a writable directory
        _cache_dir, _cache_note = "", f"off ({exc})"


# --------------------------------------------------------------------------------------------
# Type dispatch: one generic name per function, resolved at compile time to the _f32/_f64 kernel
# --------------------------------------------------------------------------------------------

def _k_softplus(x, beta, threshold):  # typed by the overloads registered in _register_kernels
    raise NotImplementedError("numba-only stub")


def _k_grad(x, beta, threshold):
    raise NotImplementedError("numba-only stub")


def _k_backward(g, x, beta, threshold):
    raise NotImplementedError("numba-only stub")


def _k_inverse(y, beta, threshold):
    raise NotImplementedError("numba-only stub")


# The same with beta == 1 as a compile-time constant: beta*x and the division by beta fold away
# (a vector division per element is a large share of the float32 kernel's time).
def _k1_softplus(x, threshold):
    raise NotImplementedError("numba-only stub")


def _k1_grad(x, threshold):
    raise NotImplementedError("numba-only stub")


def _k1_backward(g, x, threshold):
    raise NotImplementedError("numba-only stub")


def _k1_inverse(y, threshold):
    raise NotImplementedError("numba-only stub")


# The plain variants (beta == 1, x in the plain range of _constants.py; the same bits) and
# _plain_range(threshold) -> (lo, hi, has_plain): where has_plain is False (float32 without FMA,
# evaluated in float64) the loops skip the scan and _k1p_* is the full kernel.
def _k1p_softplus(x, threshold):
    raise NotImplementedError("numba-only stub")


def _k1p_grad(x, threshold):
    raise NotImplementedError("numba-only stub")


def _k1p_backward(g, x, threshold):
    raise NotImplementedError("numba-only stub")


def _plain_range(threshold):
    raise NotImplementedError("numba-only stub")


_registered = False


def _target_has_fma() -> bool:
    """Whether numba compiles for a CPU with FMA: the host's features unless NUMBA_CPU_FEATURES /
    NUMBA_CPU_NAME say otherwise (a named CPU without features: assume none). Only then do the
    float32 beta == 1 kernels run in float32 -- the C loops' condition too (kernels.h), so the two
    backends run one algorithm and agree bit for bit; without FMA llvm.fma is a libm call."""
    import platform
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True  # FMA is part of ARMv8
    feats = numba.config.CPU_FEATURES
    if feats is None:
        if numba.config.CPU_NAME not in (None, "host"):
            return False
        from llvmlite import binding as ll
        feats = ll.get_host_cpu_features().flatten()
    return "+fma" in feats.split(",")


def _register_kernels() -> None:
    global _registered
    if _registered:
        return
    from numba.core import types
    from numba.extending import overload

    from . import _nbkernels as K

    def unary(k32: Any, k64: Any) -> Callable:
        def typer(x, beta, threshold):
            k = k32 if x == types.float32 else k64
            return lambda x, beta, threshold: k(x, beta, threshold)
        return typer

    def binary(k32: Any, k64: Any) -> Callable:
        def typer(g, x, beta, threshold):
            k = k32 if x == types.float32 else k64
            return lambda g, x, beta, threshold: k(g, x, beta, threshold)
        return typer

    def unary1(k32: Any, k64: Any, k32_1: Any = None) -> Callable:
        def typer(x, threshold):
            if x == types.float32 and k32_1 is not None:  # a kernel of its own for beta == 1
                return lambda x, threshold: k32_1(x, threshold)
            if x == types.float32:
                return lambda x, threshold: k32(x, np.float32(1.0), threshold)
            return lambda x, threshold: k64(x, 1.0, threshold)
        return typer

    def binary1(k32: Any, k64: Any, k32_1: Any = None) -> Callable:
        def typer(g, x, threshold):
            if x == types.float32 and k32_1 is not None:
                return lambda g, x, threshold: k32_1(g, x, threshold)
            if x == types.float32:
                return lambda g, x, threshold: k32(g, x, np.float32(1.0), threshold)
            return lambda g, x, threshold: k64(g, x, 1.0, threshold)
        return typer

    fma = _target_has_fma()

    def plain_range(threshold):
        if threshold == types.float32 and fma:
            return lambda threshold: K.plain_range_f32(threshold) + (True,)
        if threshold == types.float32:
            return lambda threshold: K.plain_range_f32(threshold) + (False,)
        return lambda threshold: K.plain_range_f64(threshold) + (True,)

    overload(_plain_range, inline="always")(plain_range)

    def plain_unary(k32p: Any, k64p: Any, full: Any) -> Callable:
        def typer(x, threshold):
            if x == types.float32 and not fma:  # never called: has_plain is False
                return lambda x, threshold: full(x, threshold)
            k = k32p if x == types.float32 else k64p
            return lambda x, threshold: k(x, threshold)
        return typer

    def plain_binary(k32p: Any, k64p: Any, full: Any) -> Callable:
        def typer(g, x, threshold):
            if x == types.float32 and not fma:
                return lambda g, x, threshold: full(g, x, threshold)
            k = k32p if x == types.float32 else k64p
            return lambda g, x, threshold: k(g, x, threshold)
        return typer

    overload(_k1p_softplus, inline="always")(
        plain_unary(K.softplus1p_f32, K.softplus1p_f64, _k1_softplus))
    overload(_k1p_grad, inline="always")(plain_unary(K.grad1p_f32, K.grad1p_f64, _k1_grad))
    overload(_k1p_backward, inline="always")(
        plain_binary(K.backward1p_f32, K.backward1p_f64, _k1_backward))
    for generic, one, make, make1, k32, k64, k32_1 in [
            (_k_softplus, _k1_softplus, unary, unary1, K.softplus_f32, K.softplus_f64,
             K.softplus1_f32),
            (_k_grad, _k1_grad, unary, unary1, K.grad_f32, K.grad_f64, K.grad1_f32),
            (_k_backward, _k1_backward, binary, binary1, K.backward_f32, K.backward_f64,
             K.backward1_f32),
            (_k_inverse, _k1_inverse, unary, unary1, K.inverse_f32, K.inverse_f64, None)]:
        overload(generic, inline="always")(make(k32, k64))
        overload(one, inline="always")(make1(k32, k64, k32_1 if fma else None))
    global _blk_softplus, _blk_grad, _blk_backward, _blk_inverse, _wide_vectors, _within
    global _outside, _staging, _stage
    _wide_vectors = K.wide_vectors
    _within, _outside, _staging, _stage = K.within, K.outside, K.staging, K.stage
    opts = _jit_options(False)  # compiled into their callers (and cached with them)
    _blk_softplus = numba.njit(**opts)(_ser_softplus)
    _blk_grad = numba.njit(**opts)(_ser_grad)
    _blk_backward = numba.njit(**opts)(_ser_backward)
    _blk_inverse = numba.njit(**opts)(_ser_inverse)
    _registered = True


# --------------------------------------------------------------------------------------------
# Kernels over flat contiguous buffers. One numba function per (func, serial|parallel, dtype),
# each compiled for one signature on first need. Numba keeps one cache index per function
# qualname: sharing one between compile modes would mix them up, and two processes adding
# different signatures to one index at once could pair a key with the other's data file.
# --------------------------------------------------------------------------------------------

# Blocks of PLAIN_BLOCK. With beta == 1, each goes through the plain kernel where every x of the
# block lies in the plain range, else through the full one, as fsp_variant.h's FSP_PLAIN_BLOCKS:
# the plain loop tests the range as it goes; after a passing block (and for the first) a block
# goes straight in, and a failing one is computed again by the full kernel; after a failing
# block a scan (_within) decides first, so data mostly outside the range is not computed twice.
# An input that out overlaps (in place) is read from a copy of each block (_stage), so the inputs
# survive a block computed twice and LLVM's runtime overlap check lets the loops stay vectorized.
# Each kernel has one call site: inlining the plain kernel at two raised
# NumbaIRAssumptionWarning (numba 0.68). The loops index xs[i] and out[i0 + i] for i in range(m):
# with range(i0, i1) LLVM could not rule out negative indices and the loops stayed scalar (12x
# slower).

def _ser_softplus(x, out, beta, threshold):
    _wide_vectors()
    lo, hi, plain = _plain_range(threshold)
    plain = plain and beta == 1
    fused = plain  # the first block skips the scan
    xb = _staging(x, out)
    n = out.shape[0]
    for b in range((n + PLAIN_BLOCK - 1) // PLAIN_BLOCK):
        i0 = b * PLAIN_BLOCK
        m = min(PLAIN_BLOCK, n - i0)
        xs = _stage(x, xb, i0, m)
        bad = True
        if fused or (plain and _within(xs, lo, hi)):
            bad = False
            for i in range(m):
                bad |= _outside(xs[i], lo, hi)
                out[i0 + i] = _k1p_softplus(xs[i], threshold)
        if bad and beta == 1:
            for i in range(m):
                out[i0 + i] = _k1_softplus(xs[i], threshold)
        elif bad:
            for i in range(m):
                out[i0 + i] = _k_softplus(xs[i], beta, threshold)
        fused = plain and not bad


def _ser_grad(x, out, beta, threshold):
    _wide_vectors()
    lo, hi, plain = _plain_range(threshold)
    plain = plain and beta == 1
    fused = plain  # the first block skips the scan
    xb = _staging(x, out)
    n = out.shape[0]
    for b in range((n + PLAIN_BLOCK - 1) // PLAIN_BLOCK):
        i0 = b * PLAIN_BLOCK
        m = min(PLAIN_BLOCK, n - i0)
        xs = _stage(x, xb, i0, m)
        bad = True
        if fused or (plain and _within(xs, lo, hi)):
            bad = False
            for i in range(m):
                bad |= _outside(xs[i], lo, hi)
                out[i0 + i] = _k1p_grad(xs[i], threshold)
        if bad and beta == 1:
            for i in range(m):
                out[i0 + i] = _k1_grad(xs[i], threshold)
        elif bad:
            for i in range(m):
                out[i0 + i] = _k_grad(xs[i], beta, threshold)
        fused = plain and not bad


def _ser_backward(g, x, out, beta, threshold):
    _wide_vectors()
    lo, hi, plain = _plain_range(threshold)
    plain = plain and beta == 1
    fused = plain  # the first block skips the scan
    gb = _staging(g, out)
    xb = _staging(x, out)
    n = out.shape[0]
    for b in range((n + PLAIN_BLOCK - 1) // PLAIN_BLOCK):
        i0 = b * PLAIN_BLOCK
        m = min(PLAIN_BLOCK, n - i0)
        gs = _stage(g, gb, i0, m)
        xs = _stage(x, xb, i0, m)
        bad = True
        if fused or (plain and _within(xs, lo, hi)):
            bad = False
            for i in range(m):
                bad |= _outside(xs[i], lo, hi)
                out[i0 + i] = _k1p_backward(gs[i], xs[i], threshold)
        if bad and beta == 1:
            for i in range(m):
                out[i0 + i] = _k1_backward(gs[i], xs[i], threshold)
        elif bad:
            for i in range(m):
                out[i0 + i] = _k_backward(gs[i], xs[i], beta, threshold)
        fused = plain and not bad


def _ser_inverse(y, out, beta, threshold):
    _wide_vectors()
    yb = _staging(y, out)
    n = out.shape[0]
    for b in range((n + PLAIN_BLOCK - 1) // PLAIN_BLOCK):
        i0 = b * PLAIN_BLOCK
        m = min(PLAIN_BLOCK, n - i0)
        ys = _stage(y, yb, i0, m)
        if beta == 1:
            for i in range(m):
                out[i0 + i] = _k1_inverse(ys[i], threshold)
        else:
            for i in range(m):
                out[i0 + i] = _k_inverse(ys[i], beta, threshold)


# The parallel kernels hand each block to a separately compiled serial loop (``_blk_*``, built
# in _register_kernels): the same loop written inline in the prange body ran 2.5x slower here
# (measured: float32 1e7, one thread, ratio 14.6 vs 6.0 to np.maximum), as numba's parfor
# lowering keeps LLVM from vectorizing it. The callee's code is compiled into the caller's
# library, so the caller's disk cache covers it.

def _par_softplus(x, out, beta, threshold, bs):
    n = out.shape[0]
    for b in prange((n + bs - 1) // bs):
        lo = b * bs
        hi = min(lo + bs, n)
        _blk_softplus(x[lo:hi], out[lo:hi], beta, threshold)


def _par_grad(x, out, beta, threshold, bs):
    n = out.shape[0]
    for b in prange((n + bs - 1) // bs):
        lo = b * bs
        hi = min(lo + bs, n)
        _blk_grad(x[lo:hi], out[lo:hi], beta, threshold)


def _par_backward(g, x, out, beta, threshold, bs):
    n = out.shape[0]
    for b in prange((n + bs - 1) // bs):
        lo = b * bs
        hi = min(lo + bs, n)
        _blk_backward(g[lo:hi], x[lo:hi], out[lo:hi], beta, threshold)


def _par_inverse(y, out, beta, threshold, bs):
    n = out.shape[0]
    for b in prange((n + bs - 1) // bs):
        lo = b * bs
        hi = min(lo + bs, n)
        _blk_inverse(y[lo:hi], out[lo:hi], beta, threshold)


# _nbkernels.wide_vectors (512-bit vectors in the loops that call it), .within/.outside (the
# plain-range test) and .staging/.stage (in-place blocks); set on first use
_wide_vectors: Any = None
_within: Any = None
_outside: Any = None
_staging: Any = None
_stage: Any = None
# numba dispatchers of the serial loops (any dtype), called by the parallel kernels; set on first use
_blk_softplus: Any = None
_blk_grad: Any = None
_blk_backward: Any = None
_blk_inverse: Any = None


_PY_KERNELS = {
    ("softplus", "ser"): _ser_softplus, ("softplus", "par"): _par_softplus,
    ("softplus_grad", "ser"): _ser_grad, ("softplus_grad", "par"): _par_grad,
    ("softplus_backward", "ser"): _ser_backward, ("softplus_backward", "par"): _par_backward,
    ("softplus_inverse", "ser"): _ser_inverse, ("softplus_inverse", "par"): _par_inverse,
}


_DTYPES = {np.float32: "f32", np.float64: "f64"}


def _kernel_signature(func: str, dtype: str, mode: str = "ser") -> Any:
    from numba.core import types
    f = types.float32 if dtype == "f32" else types.float64
    src = types.Array(f, 1, "C", readonly=True)  # writable arrays convert to it: one compile
    dst = types.Array(f, 1, "C")
    ins = (src, src) if func == "softplus_backward" else (src,)
    if mode == "par":  # + the block size (see _block_size)
        return types.void(*ins, dst, f, f, types.int64)
    return types.void(*ins, dst, f, f)


def _block_size(n: int, nthreads: int) -> int:
    """Block size for the parallel kernels: blocks of at most BLOCK_SIZE whose count is a multiple
    of the thread count, so numba's static schedule (a contiguous run of blocks per thread) gives
    every thread the same work (1e5 elements on 2 threads: 8 blocks of 12500, not 4 + 3 of 16384;
    measured: float32 softplus at 1e5 on 2 threads, 2.35 -> 1.96x ReLU)."""
    nb = -(-n // BLOCK_SIZE)
    nb = -(-nb // nthreads) * nthreads
    return -(-n // nb)


def _renamed(fn: Callable, suffix: str) -> Callable:
    """A copy of ``fn`` under another qualname (so numba gives it its own cache index)."""
    import types as pytypes
    g = pytypes.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                             fn.__defaults__, fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    g.__module__ = fn.__module__
    return g


def _jit_options(cache: bool) -> dict:
    # error_model="numpy": division never raises (a ZeroDivisionError check would block SIMD).
    # No fastmath: the kernels' error-free transformations need strict IEEE evaluation.
    return {"nogil": True, "error_model": "numpy", "cache": cache}


def _get_kernel(func: str, mode: str, dtype: str) -> Any:
    """The compiled kernel: ``mode`` "ser" or "par", ``dtype`` "f32" or "f64"."""
    key = (func, mode, dtype)
    disp = _kernels.get(key)
    if disp is not None:
        return disp
    with _state_lock:
        disp = _kernels.get(key)
        if disp is None:
            if mode == "par":
                _setup_threading()
            _register_kernels()
            _decide_cache()
            opts = _jit_options(bool(_cache_dir))
            if mode == "par":
                opts["parallel"] = True
            py = _renamed(_PY_KERNELS[func, mode], "_" + dtype)
            disp = numba.njit([_kernel_signature(func, dtype, mode)], **opts)(py)
            _kernels[key] = disp
    return disp


# --------------------------------------------------------------------------------------------
# The ufuncs
# --------------------------------------------------------------------------------------------

def _uf_softplus(x, beta, threshold):
    return _k1_softplus(x, threshold) if beta == 1 else _k_softplus(x, beta, threshold)


def _uf_grad(x, beta, threshold):
    return _k1_grad(x, threshold) if beta == 1 else _k_grad(x, beta, threshold)


def _uf_backward(g, x, beta, threshold):
    return _k1_backward(g, x, threshold) if beta == 1 else _k_backward(g, x, beta, threshold)


def _uf_inverse(y, beta, threshold):
    return _k1_inverse(y, threshold) if beta == 1 else _k_inverse(y, beta, threshold)


_PY_UFUNCS = {"softplus": _uf_softplus, "softplus_grad": _uf_grad,
              "softplus_backward": _uf_backward, "softplus_inverse": _uf_inverse}

_UFUNC_DOCS = {
    "softplus": "softplus(x, beta, threshold): x where beta*x > threshold, else log1p(exp(beta*x))/beta.",
    "softplus_grad": "softplus_grad(x, beta, threshold): 1 where beta*x > threshold, else sigmoid(beta*x).",
    "softplus_backward": "softplus_backward(g, x, beta, threshold): g * softplus_grad(x, beta, threshold).",
    "softplus_inverse": ("softplus_inverse(y, beta, threshold): y where beta*y > threshold, else "
                         "log(expm1(beta*y))/beta; NaN for y <= 0."),
}


for _name, _py in _PY_UFUNCS.items():
    _py.__name__ = _name  # the ufunc takes its name from here; pickle looks it up by this name
    _py.__doc__ = _UFUNC_DOCS[_name]
del _name, _py


class _PyUFuncHead(ctypes.Structure):
    """The leading fields of NumPy's ``PyUFuncObject`` (numpy/ufuncobject.h), up to ``op_flags``."""
    _fields_ = [
        ("ob_refcnt", ctypes.c_ssize_t), ("ob_type", ctypes.c_void_p),
        ("nin", ctypes.c_int), ("nout", ctypes.c_int), ("nargs", ctypes.c_int),
        ("identity", ctypes.c_int), ("functions", ctypes.c_void_p), ("data", ctypes.c_void_p),
        ("ntypes", ctypes.c_int), ("reserved1", ctypes.c_int), ("name", ctypes.c_char_p),
        ("types", ctypes.c_void_p), ("doc", ctypes.c_void_p), ("ptr", ctypes.c_void_p),
        ("obj", ctypes.c_void_p), ("userloops", ctypes.c_void_p),
        ("core_enabled", ctypes.c_int), ("core_num_dim_ix", ctypes.c_int),
        ("core_num_dims", ctypes.c_void_p), ("core_dim_ixs", ctypes.c_void_p),
        ("core_offsets", ctypes.c_void_p), ("core_signature", ctypes.c_void_p),
        ("type_resolver", ctypes.c_void_p), ("dict", ctypes.c_void_p),
        ("vectorcall", ctypes.c_void_p), ("reserved3", ctypes.c_void_p),
        ("op_flags", ctypes.POINTER(ctypes.c_uint32)),
    ]


# numba's flags on each output: NPY_ITER_READWRITE | NPY_ITER_UPDATEIFCOPY | NPY_ITER_ALLOCATE.
_NUMBA_OUT_FLAGS = 0x00010000 | 0x00800000 | 0x01000000


def _enable_where(uf: np.ufunc) -> bool:
    """Give ``uf``'s outputs NumPy's default iterator flags (0 = default, incl. WRITEMASKED).

    Only when the struct read through ``_PyUFuncHead`` matches the ufunc's attributes and holds
    exactly numba's flags; returns whether ``where=`` is enabled.
    """
    if (type(uf) is not np.ufunc or sys.implementation.name != "cpython"
            or ctypes.sizeof(ctypes.c_void_p) != 8):
        return False
    head = _PyUFuncHead.from_address(id(uf))
    if (head.nin, head.nout, head.nargs, head.ntypes) != (uf.nin, uf.nout, uf.nargs, uf.ntypes):
        return False
    if head.name != uf.__name__.encode() or head.core_enabled != 0 or not head.op_flags:
        return False
    outs = range(uf.nin, uf.nargs)
    if any(head.op_flags[i] != 0 for i in range(uf.nin)):
        return False
    if all(head.op_flags[i] == 0 for i in outs):
        return True  # already NumPy's defaults (a numba that no longer overrides them)
    if any(head.op_flags[i] != _NUMBA_OUT_FLAGS for i in outs):
        return False
    for i in outs:
        head.op_flags[i] = 0
    return True


def _get_ufunc(name: str) -> np.ufunc:
    """Build (compile or load from the cache) one ufunc, once per process."""
    global _where_ok
    uf = _ufuncs.get(name)
    if uf is not None:
        return uf
    with _state_lock:
        uf = _ufuncs.get(name)
        if uf is not None:
            return uf
        _setup_threading()
        _register_kernels()
        _decide_cache()
        # workqueue aborts on concurrent entry and a raw ufunc cannot take our lock: build serial.
        target = "parallel" if _parallel_ok and not _serialize else "cpu"
        py = _PY_UFUNCS[name]
        nin = py.__code__.co_argcount
        # float32 first: NumPy takes the first loop the inputs cast to safely, so a float32 array
        # with Python-float beta/threshold must meet the float32 loop first.
        sigs = [f"{t}({', '.join([t] * nin)})" for t in ("float32", "float64")]
        uf = numba.vectorize(sigs, target=target, cache=bool(_cache_dir))(py)
        if not isinstance(uf, np.ufunc):
            # target="cpu" gives a DUFunc wrapping a real ufunc; keep the DUFunc alive (it owns
            # the compiled loops) and hand out the ufunc (its loops are all compiled already).
            _keepalive.append(uf)
            uf = uf.ufunc
        uf.__module__ = __name__  # pickle finds it here without scanning sys.modules
        ok = _enable_where(uf)
        _where_ok = ok if _where_ok is None else (_where_ok and ok)
        globals()[name] = uf  # later lookups (and pickle's) no longer reach __getattr__
        _ufuncs[name] = uf
    return uf


def __getattr__(name: str) -> Any:  # PEP 562: the ufuncs are compiled on first access
    if name in FUNCS:
        return _get_ufunc(name)
    if name == "UFUNCS":
        return {f: _get_ufunc(f) for f in FUNCS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(FUNCS) | {"UFUNCS"})


# --------------------------------------------------------------------------------------------
# The backend protocol
# --------------------------------------------------------------------------------------------

def _flat_views(arrays: tuple[np.ndarray, ...], out: np.ndarray) -> tuple[list, np.ndarray] | None:
    """1-D views of the operands when one flat loop covers them; else None.

    Needs every operand of out's exact shape (no broadcasting), aligned, and all C- or all
    F-contiguous (same element order in memory). Overlaps were removed by ``_detach_overlaps``.
    """
    if not out.flags.aligned:
        return None
    if out.flags.c_contiguous:
        flat = _ravel_c
    elif out.flags.f_contiguous:
        flat = _ravel_f
    else:
        return None
    c_order = flat is _ravel_c
    views = []
    for a in arrays:
        if a.shape != out.shape or not a.flags.aligned:
            return None
        if not (a.flags.c_contiguous if c_order else a.flags.f_contiguous):
            return None
        views.append(flat(a))
    return views, flat(out)


def _detach_overlaps(arrays: tuple[np.ndarray, ...], out: np.ndarray) -> tuple[np.ndarray, ...]:
    """Copy each input that overlaps ``out`` without being exactly ``out``'s view.

    Exact aliasing (in place) is safe: every element is read, then written, by one thread. A
    partial overlap is not: blocks run concurrently, and NumPy hands a numba *parallel* ufunc
    overlapping 1-D buffers uncopied (it assumes one forward loop), which numba splits across
    threads, so a thread can overwrite input another one has yet to read.
    """
    res = []
    for a in arrays:
        if a is not out and np.may_share_memory(a, out) and not (
                a.shape == out.shape and a.strides == out.strides
                and a.__array_interface__["data"][0] == out.__array_interface__["data"][0]):
            a = a.copy()
        res.append(a)
    return tuple(res)


def _ravel_c(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)  # a view: a is C-contiguous


def _ravel_f(a: np.ndarray) -> np.ndarray:
    return a.T.reshape(-1)  # a.T is C-contiguous: a view in memory order


def run(func: str, arrays: tuple[np.ndarray, ...], out: np.ndarray,
        beta: float, threshold: float, nthreads: int) -> None:
    """Compute ``func`` of ``arrays`` into ``out`` (the backend protocol of ``_dispatch``).

    Parameters
    ----------
    func : {"softplus", "softplus_grad", "softplus_backward", "softplus_inverse"}
    arrays : tuple of ndarray
        ``(x,)``, or ``(grad_output, x)`` for ``softplus_backward``; float32 or float64 equal to
        ``out.dtype``, shapes broadcasting to ``out.shape``, any strides; may be ``out`` itself.
    out : ndarray
        Written in place.
    beta, threshold : float
        Rounded to ``out.dtype`` first (``threshold=inf``: no cut-off).
    nthreads : int
        Threads to use (>= 1); capped at ``numba.config.NUMBA_NUM_THREADS``.
    """
    if func not in FUNCS:
        raise ValueError(f"unknown func {func!r}; expected one of {FUNCS}")
    if out.size == 0:
        return
    scalar = out.dtype.type
    with np.errstate(all="ignore"):  # a huge threshold rounds to inf in float32: intended
        b, t = scalar(beta), scalar(threshold)
    n = max(1, min(int(nthreads), numba.config.NUMBA_NUM_THREADS))
    arrays = _detach_overlaps(arrays, out)
    flat = _flat_views(arrays, out)
    if flat is not None:
        ins, dst = flat
        dtype = _DTYPES[scalar]
        if n > 1 and dst.size > BLOCK_SIZE:
            _setup_threading()
            if _parallel_ok:
                kernel = _get_kernel(func, "par", dtype)
                with _pool(n):
                    kernel(*ins, dst, b, t, _block_size(dst.size, n))
                return
        _get_kernel(func, "ser", dtype)(*ins, dst, b, t)
        return
    uf = _get_ufunc(func)
    with np.errstate(all="ignore"):
        if _parallel_ok and not _serialize:  # a parallel-target ufunc
            with _pool(n if out.size > BLOCK_SIZE else 1):
                uf(*arrays, b, t, out=out)
        else:
            uf(*arrays, b, t, out=out)


# --------------------------------------------------------------------------------------------
# The API's fast path for calls that run on numba (cython's, in C, serves the others)
# --------------------------------------------------------------------------------------------

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
#: 2*func + (dtype is float64) -> _get_kernel's key (an int key: hashing a dtype costs ~1 us)
_FAST_KEYS = {2 * f + d: (FUNCS[f], "ser", ("f32", "f64")[d]) for f in range(4) for d in (0, 1)}
_fast_kernels: dict = {}  # _FAST_KEYS key -> the compiled serial kernel


def fast(func: int, x: Any, beta: Any, threshold: Any, g: Any, out: Any,
         backend: str | None) -> np.ndarray | None:
    """The API's fast path for calls that run on numba: ``_api._FAST`` itself where cython is
    unavailable; else cython's ``_ext.fast`` hands it the calls forced onto numba. The same
    contract as ``_ext.fast`` (`func` 0 softplus, 1 grad, 2 backward (g, x), 3 inverse; None,
    with nothing computed or written, for any call that is not of the plain kind).

    That kind: the backend that applies (`backend`; without it, no use_backend() block in force
    and the global default) is "numba", or None while the automatic choice is numba (cython
    unavailable); fewer than PARALLEL_MIN_SIZE elements (one thread); beta the float 1.0;
    threshold a float (not NaN) or None; x (and g) a C-contiguous aligned native float32/float64
    ndarray with at least one dimension (g: same dtype and shape); `out` None or a writeable
    C-contiguous aligned array of x's dtype and shape that is x (or g) or overlaps neither. Such a
    call passes every check of the general path (``_api._apply``) and gets the serial kernel that
    path would run, so skipping the checks changes nothing but the time (float32 n = 1e3: ~24 ->
    ~5 us).
    """
    if backend is None:
        if _dispatch._override.get() is not _dispatch._NO_OVERRIDE:
            return None
        backend = _dispatch._global_default  # set_backend() / FASTSOFTPLUS_BACKEND, or _UNSET
        if backend is None:
            auto = _dispatch._auto_cache if _dispatch._auto_ready else None
            if auto is None or auto[0] != NAME:
                return None
            backend = NAME
    if backend != NAME or type(x) is not np.ndarray or type(beta) is not float or beta != 1.0:
        return None
    if threshold is None:
        t = math.inf
    elif type(threshold) is float and threshold == threshold:
        t = threshold
    else:
        return None
    dt = x.dtype
    if dt is _F32:
        t = _api._f32_threshold(t)
    elif dt is not _F64:
        return None
    fx = x.flags  # one flags object per array: each attribute read of .flags builds a new one
    if x.ndim == 0 or x.size >= _dispatch.PARALLEL_MIN_SIZE or not (fx.c_contiguous and fx.aligned):
        return None
    if func == 2:
        if type(g) is not np.ndarray or g.dtype is not dt or g.shape != x.shape:
            return None
        fg = g.flags
        if not (fg.c_contiguous and fg.aligned):
            return None
    if out is None:
        res = np.empty_like(x)
    else:
        if type(out) is not np.ndarray or out.dtype is not dt or out.shape != x.shape:
            return None
        fo = out.flags
        if not fo.carray:  # C-contiguous, aligned and writeable
            return None
        # arrays that each own their memory cannot overlap: no may_share_memory (~0.8 us) then
        if out is not x and not (fo.owndata and fx.owndata) and np.may_share_memory(out, x):
            return None
        if func == 2 and out is not g and not (fo.owndata and fg.owndata) and (
                np.may_share_memory(out, g)):
            return None
        res = out
    key = 2 * func + (dt is _F64)
    kernel = _fast_kernels.get(key)
    if kernel is None:
        kernel = _fast_kernels[key] = _get_kernel(*_FAST_KEYS[key])
    if x.ndim != 1:  # 1-D views for the 1-D kernels
        x, g, dst = x.reshape(-1), (g.reshape(-1) if func == 2 else None), res.reshape(-1)
    else:
        dst = res
    if func == 2:
        kernel(g, x, dst, 1.0, t)
    else:
        kernel(x, dst, 1.0, t)
    return res


def info() -> dict[str, str]:
    """How this backend runs: threading layer, thread count, disk cache (starts nothing)."""
    if _cache_dir is None:
        cache = "not decided yet (decided at first compile)"
    else:
        cache = _cache_dir or _cache_note
    d = {
        "numba": numba.__version__,
        "threading": _planned_layer(),
        "num_threads": str(numba.config.NUMBA_NUM_THREADS),
        "cache": cache,
        "block_size": str(BLOCK_SIZE),
    }
    if _where_ok is not None:
        d["where"] = "supported" if _where_ok else "unsupported by these numba ufuncs"
    return d
