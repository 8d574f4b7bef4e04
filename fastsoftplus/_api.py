"""The public functions: validate, convert, hand to the chosen backend. All checks live here.

Order of work for every call, so that a rejected call never writes to ``out``:
parameters (beta, threshold, backend name) -> inputs (dtypes, shapes) -> ``out`` -> backend
choice (may raise ``BackendUnavailableError``) -> conversion/copies -> the backend's ``run``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _constants, _dispatch

__all__ = ["softplus", "softplus_grad", "softplus_backward", "softplus_inverse", "explain"]

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
# float32 rounds to inf at and above this, to 0 at and below 2**-150 (ties to even).
_F32_OVERFLOW = _constants.F32_OVERFLOW
_F32_UNDERFLOW = 2.0 ** -150


# --- parameters --------------------------------------------------------------------------------

def _real(value: Any, name: str) -> float:
    """``value`` as a Python float; TypeError if it is no real number (bool refused)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        # NumPy would take True as 1; here it is almost surely a mixed-up argument (beta=True)
        raise TypeError(f"{name} must be a real number, not bool ({value!r})")
    if not isinstance(value, numbers.Real):
        what = (f"an array of shape {value.shape} and dtype {value.dtype}"
                if isinstance(value, np.ndarray) else f"{type(value).__name__} {value!r}")
        raise TypeError(f"{name} must be a real number, got {what}")
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range: its sign says which infinity
        return math.inf if value > 0 else -math.inf


def _check_params(beta: Any, threshold: Any) -> tuple[float, float]:
    if type(beta) is not float:
        beta = _real(beta, "beta")
    if not beta > 0 or beta == math.inf:  # NaN fails `> 0`
        why = ("must not be NaN" if beta != beta else
               "must be finite" if beta == math.inf else "must be > 0")
        raise ValueError(f"beta {why}, got {beta!r}")
    if threshold is None:
        return beta, math.inf
    if type(threshold) is not float:
        threshold = _real(threshold, "threshold")
    if threshold != threshold:
        raise ValueError("threshold must not be NaN (use None or math.inf for no cut-off)")
    return beta, threshold


# --- inputs and out ----------------------------------------------------------------------------

def _f32_threshold(threshold: float) -> float:
    """threshold for a float32 computation: +-inf where float32(threshold) is (said exactly, so
    no out-of-range double -> float conversion happens in C)."""
    return math.copysign(math.inf, threshold) if abs(threshold) >= _F32_OVERFLOW else threshold


def _check_dtype(dt: np.dtype, name: str) -> None:
    if dt.kind in "biu" or (dt.kind == "f" and dt.itemsize <= 8):
        return
    extra = " (convert to float64)" if dt.kind == "f" else ""
    raise TypeError(
        f"{name} has unsupported dtype {dt}{extra}; fastsoftplus takes float16, float32, "
        f"float64, bool and integer arrays")


def _as_array(a: Any, name: str) -> np.ndarray:
    """``np.asarray(a)``; a conversion error (ragged lists, ...) names the argument."""
    if type(a) is np.ndarray:
        return a
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{name} cannot be converted to an array: {e}") from e


def _result_dtype(dt: np.dtype) -> np.dtype:
    """float16/32/64 keep their type (native order); bool and integers become float64."""
    return _F64 if dt.kind in "biu" else dt.newbyteorder("=")


def _overrides_ufunc(obj: Any) -> bool:
    """True for objects (dask, pandas, xarray, ...) that take over numpy ufuncs."""
    t = type(obj)
    if t is np.ndarray or t is float or t is int:
        return False
    f = getattr(t, "__array_ufunc__", None)
    return f is not None and f is not np.ndarray.__array_ufunc__


def _declared_dtypes(obj: Any) -> list[np.dtype]:
    """The dtype(s) an array-like declares without being computed: ``dtype`` (dask, xarray,
    Series) or ``dtypes`` (DataFrame); [] when it declares none."""
    dt = getattr(obj, "dtype", None)
    if dt is None:
        dts = getattr(obj, "dtypes", None)
        try:
            return [np.dtype(d) for d in dts] if dts is not None else []
        except TypeError:  # pandas extension dtypes: let the ufunc decide
            return []
    try:
        return [np.dtype(dt)]
    except TypeError:
        return []


def _check_out(out: Any, shape: tuple, rdt: np.dtype) -> None:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != rdt and (out.dtype.kind != "f" or out.dtype.newbyteorder("=") != rdt):
        raise TypeError(f"out has dtype {out.dtype} but the result has dtype {rdt}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape} but the result has shape {shape}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")


def _same_memory_layout(a: np.ndarray, b: np.ndarray) -> bool:
    """Element i of ``a`` is element i of ``b`` (in-place use, safe for elementwise kernels)."""
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


# --- the one path every function takes ---------------------------------------------------------

def _apply(func: str, inputs: tuple, names: tuple[str, ...], beta: Any, threshold: Any,
           out: Any, backend: str | None) -> Any:
    global _FAST
    beta, threshold = _check_params(beta, threshold)
    if backend is not None:
        _dispatch.check_name(backend)

    if any(_overrides_ufunc(a) for a in inputs):
        # dask/pandas/xarray: the numpy ufunc keeps them their own type (a dask array stays lazy)
        from . import ufuncs
        dtypes = [_declared_dtypes(a) for a in inputs]
        for dts, name in zip(dtypes, names):
            for dt in dts:
                _check_dtype(dt, name)  # before the handover: the message names the dtype
        if all(dts and all(dt in (_F16, _F32) for dt in dts) for dts in dtypes):
            # pandas hands the ufunc np.asarray(beta): a 0-d float64 array would pick the float64
            # loop; float32 parameters keep float32/float16 data in their precision
            beta, threshold = np.float32(beta), np.float32(threshold)
        kw = {} if out is None else {"out": out}
        return getattr(ufuncs, func)(*inputs, beta, threshold, **kw)

    arrs = [_as_array(a, name) for a, name in zip(inputs, names)]
    for a, name in zip(arrs, names):
        _check_dtype(a.dtype, name)
    if len(arrs) == 1:
        rdt = _result_dtype(arrs[0].dtype)
        shape = arrs[0].shape
    else:
        # numpy promotion, Python scalars weak as in a ufunc (2.0 * float32 array -> float32)
        rdt = _result_dtype(np.result_type(
            *(i if type(i) in (float, int) else a for i, a in zip(inputs, arrs))))
        try:
            shape = np.broadcast_shapes(*(a.shape for a in arrs))
        except ValueError:
            raise ValueError(
                f"{' and '.join(names)} do not broadcast together: shapes "
                f"{' and '.join(str(a.shape) for a in arrs)}") from None
    cdt = _F32 if rdt == _F16 else rdt  # float16 is computed in float32
    if cdt == _F32:
        if beta >= _F32_OVERFLOW or beta <= _F32_UNDERFLOW:
            raise ValueError(f"beta must be representable in float32 (the precision of this "
                             f"computation), got {beta!r}")
        threshold = _f32_threshold(threshold)
    if out is not None:
        _check_out(out, shape, rdt)

    size = math.prod(shape)
    contiguous = all(a.flags.c_contiguous for a in arrs)
    choice = _dispatch.choose(func, cdt, size, contiguous, backend)
    if _FAST is None:
        _FAST = _dispatch.fast_entry(choice.name)

    # From here on nothing raises for valid input: the target may be written.
    direct = out is not None and out.dtype == cdt
    target = out if direct else np.empty(shape, cdt)
    if size:
        ready = []
        for a in arrs:
            a = a.astype(cdt, copy=False)  # dtype and native byte order
            if direct and np.may_share_memory(a, target) and not _same_memory_layout(a, target):
                a = a.copy()  # partial overlap with out: read from a copy
            if a.shape != shape:
                a = np.broadcast_to(a, shape)
            ready.append(a)
        choice.module.run(func, tuple(ready), target, beta, threshold, choice.nthreads)
    if out is not None:
        if not direct:  # float16 or swapped byte order; rounding to float16 may over/underflow
            with np.errstate(all="ignore"):
                np.copyto(out, target, casting="unsafe")
        return out
    if rdt == cdt:
        result = target
    else:
        with np.errstate(all="ignore"):
            result = target.astype(rdt)
    return result[()] if result.ndim == 0 else result


# --- the fast path -----------------------------------------------------------------------------

#: The fast path (set by the first call through `_apply`, see ``_dispatch.fast_entry``): the cython
#: backend's ``_ext.fast`` once that backend is loaded, else numba's ``_numba.fast`` where cython
#: cannot load, else None. Each public function tries it first: a small, plain call
#: (float32/float64 C-contiguous ndarray, beta the float 1.0, a size the automatic choice, or the
#: backend forced by name, runs on one thread, a suitable `out`) goes straight to the serial
#: loop; any other call returns None there and takes `_apply`. Such a call passes every check of
#: `_apply`, so skipping them changes nothing but the time: at n = 1e3 float32 the C version saves
#: ~1.2 us per call over the same checks in Python (ReLU: 2.4 us), and numba's fast path (checks
#: in Python) ~19 of numba's 24 us through `_apply`.
_FAST = None

# --- public functions --------------------------------------------------------------------------

_PARAMS_DOC = """
    beta : float, default 1.0
        Finite real > 0. For float32 (and float16) input it is rounded to float32, as in PyTorch.
    threshold : float or None, default 20.0
        Where ``beta*x > threshold`` (computed in the input precision, as PyTorch) the linear
        branch is used. None or ``math.inf``: no cut-off, the exact function everywhere.
    out : numpy.ndarray, optional
        Where to write the result: the result's shape and dtype, writeable; may be the input
        itself (in place). Nothing is written if the call is rejected.
    backend : str, optional
        Force a backend (``"cython"``, ``"numba"``, ``"numpy"``); default: the dispatcher's choice
        (see `explain`). Ignored for objects handed to `fastsoftplus.ufuncs` (only its name is
        checked).
"""

_RAISES_DOC = """
    Raises
    ------
    TypeError
        An unsupported input dtype (complex, object, str, datetime, ...); beta or threshold not a
        real number (bool refused); `out` not an ndarray or of the wrong dtype.
    ValueError
        beta not finite and > 0; a NaN threshold; `out` of the wrong shape or read-only; an
        unknown backend name.
    BackendUnavailableError
        A named backend cannot run here (``.reason`` says why).
"""

_TYPES_DOC = """
    Returns
    -------
    numpy.ndarray or numpy scalar
        float32 for float32 input, float64 for float64, float16 for float16 (computed in
        float32), float64 for bool and integers; a NumPy scalar for a scalar or 0-d input;
        `out` when given. Objects overriding ``__array_ufunc__`` (dask, pandas, xarray) are
        handed to `fastsoftplus.ufuncs` and come back as their own type.
"""


def softplus(x: ArrayLike, beta: float = 1.0, threshold: float | None = 20.0, *,
             out: np.ndarray | None = None, backend: str | None = None) -> Any:
    if _FAST is not None:
        r = _FAST(0, x, beta, threshold, None, out, backend)
        if r is not None:
            return r
    return _apply("softplus", (x,), ("x",), beta, threshold, out, backend)


softplus.__doc__ = f"""Softplus, ``log1p(exp(beta*x)) / beta``, as ``torch.nn.functional.softplus``.

    ``x`` where ``beta*x > threshold``; elsewhere computed stably, without overflow
    (``softplus(1000.0, threshold=None) == 1000.0``). NaN -> NaN, +inf -> +inf, -inf -> 0,
    -0.0 -> log(2)/beta.

    Parameters
    ----------
    x : array_like
        Any shape, strides and byte order; lists, scalars, read-only arrays, memory maps.
{_PARAMS_DOC}{_TYPES_DOC}{_RAISES_DOC}
    Examples
    --------
    >>> import fastsoftplus as fsp
    >>> float(fsp.softplus(0.0))
    0.6931471805599453
    >>> fsp.softplus([1000.0, -1000.0], threshold=None)
    array([1000.,    0.])
    """


def softplus_grad(x: ArrayLike, beta: float = 1.0, threshold: float | None = 20.0, *,
                  out: np.ndarray | None = None, backend: str | None = None) -> Any:
    if _FAST is not None:
        r = _FAST(1, x, beta, threshold, None, out, backend)
        if r is not None:
            return r
    return _apply("softplus_grad", (x,), ("x",), beta, threshold, out, backend)


softplus_grad.__doc__ = f"""Derivative of `softplus` with respect to ``x``: ``sigmoid(beta*x)``.

    1 where ``beta*x > threshold``. NaN -> NaN, +inf -> 1, -inf -> 0.

    Parameters
    ----------
    x : array_like
        As for `softplus`.
{_PARAMS_DOC}{_TYPES_DOC}{_RAISES_DOC}"""


def softplus_backward(grad_output: ArrayLike, x: ArrayLike, beta: float = 1.0,
                      threshold: float | None = 20.0, *, out: np.ndarray | None = None,
                      backend: str | None = None) -> Any:
    if _FAST is not None:
        r = _FAST(2, x, beta, threshold, grad_output, out, backend)
        if r is not None:
            return r
    return _apply("softplus_backward", (grad_output, x), ("grad_output", "x"), beta, threshold,
                  out, backend)


softplus_backward.__doc__ = f"""``grad_output * softplus_grad(x)`` in one fused pass.

    Exactly that product in the result's precision: where the derivative underflows to 0, an
    infinite ``grad_output`` gives NaN (as PyTorch).

    Parameters
    ----------
    grad_output, x : array_like
        Broadcast together; the result dtype is NumPy's promotion of the two (bool and integers
        then becoming float64, float16 staying float16).
{_PARAMS_DOC}{_TYPES_DOC}{_RAISES_DOC}"""


def softplus_inverse(y: ArrayLike, beta: float = 1.0, threshold: float | None = 20.0, *,
                     out: np.ndarray | None = None, backend: str | None = None) -> Any:
    if _FAST is not None:
        r = _FAST(3, y, beta, threshold, None, out, backend)
        if r is not None:
            return r
    return _apply("softplus_inverse", (y,), ("y",), beta, threshold, out, backend)


softplus_inverse.__doc__ = f"""Inverse of `softplus`: ``log(expm1(beta*y)) / beta``.

    ``y`` where ``beta*y > threshold``; NaN for ``y <= 0`` (-0.0 and -inf included); +inf -> +inf.

    Parameters
    ----------
    y : array_like
        As ``x`` for `softplus`.
{_PARAMS_DOC}{_TYPES_DOC}{_RAISES_DOC}"""


def explain(x: ArrayLike, func: str = "softplus") -> str:
    """Say which backend would compute ``func(x)`` and the rule that chose it.

    Parameters
    ----------
    x : array_like
        The input the call would get (for ``softplus_backward``: the broadcast inputs' shape and
        dtype matter; pass ``x``).
    func : str
        One of ``"softplus"``, ``"softplus_grad"``, ``"softplus_backward"``,
        ``"softplus_inverse"``.

    Returns
    -------
    str
        E.g. ``"numba: automatic: first available in preference order cython > numba > numpy
        (...); 1000 float32 elements, C-contiguous; 1 thread (size 1000 < PARALLEL_MIN_SIZE=32768)"``.
    """
    if func not in _dispatch.FUNCS:
        raise ValueError(f"func={func!r} is not one of {', '.join(_dispatch.FUNCS)}")
    if _overrides_ufunc(x):
        name, _ = _dispatch.ufunc_table()
        return (f"ufuncs.{func} (from backend {name!r}): {type(x).__module__}."
                f"{type(x).__name__} overrides __array_ufunc__, so it goes through the numpy "
                f"ufunc and comes back as its own type")
    a = _as_array(x, "x")
    _check_dtype(a.dtype, "x")
    rdt = _result_dtype(a.dtype)
    cdt = _F32 if rdt == _F16 else rdt
    c = _dispatch.choose(func, cdt, a.size, a.flags.c_contiguous, None)
    layout = ("C-contiguous" if a.flags.c_contiguous else
              "F-contiguous" if a.flags.f_contiguous else "strided")
    conv = f" (computed as {cdt})" if cdt != a.dtype else ""
    return (f"{c.name}: {c.rule}; {a.size} {a.dtype} elements{conv}, {layout}; "
            f"{c.nthreads} thread{'s' if c.nthreads != 1 else ''} "
            f"({_dispatch.threads_rule(a.size, c.name, cdt)})")
