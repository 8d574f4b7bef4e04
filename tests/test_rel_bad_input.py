"""Reliability (issue 7, part 4): a rejected call loses nothing.

For every rejected call (bad beta, NaN threshold, unsupported dtypes, wrong ``out`` shape or
dtype, read-only ``out``, strings, objects, ragged lists, unknown backend) and every backend:

- the exception has the documented type (API.md) and its message names the offending argument;
- ``out`` and every input are unchanged byte for byte (arrays), or equal to a deep copy (lists);
- the same arrays then still work in a valid call.

The inputs deliberately alias ``out`` in some cases (in place), the case where a half-done
computation would be visible.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, Callable, NamedTuple

import numpy as np
import pytest

import fastsoftplus as fsp

import arrays

FUNCS = arrays.FUNCS
SENTINEL = 42.0  # out is filled with it; any write shows


class Bad(NamedTuple):
    """One rejected call: ``make()`` returns (args, kwargs) built fresh; the call must raise
    ``exc`` with a message matching ``pattern``."""
    name: str
    make: Callable[[str], tuple[tuple, dict]]  # func -> (positional args, keyword args)
    exc: type
    pattern: str


def _x(dtype=np.float64, n=8):
    return np.linspace(-30, 30, n).astype(dtype)


def _out(dtype=np.float64, n=8):
    return np.full(n, SENTINEL, dtype)


def _args(func: str, x: Any, g: Any = None) -> tuple:
    """Positional inputs of ``func``: (x,) or (grad_output, x)."""
    if func == "softplus_backward":
        if g is None:  # same float dtype as x, so that the result dtype is x's
            dt = x.dtype if isinstance(x, np.ndarray) and x.dtype.kind == "f" else np.float64
            g = np.linspace(-1, 1, np.shape(x)[0] if np.ndim(x) else 1).astype(dt)
        return (g, x)
    return (x,)


def _arg_name(func: str) -> str:
    return "y" if func == "softplus_inverse" else "x"


def _param(beta=1.0, threshold=20.0, *, in_place=False):
    """A call with a bad beta/threshold and a valid out (or out = x, in place)."""
    def make(func):
        x = _x()
        out = x if in_place else _out()
        return (*_args(func, x), beta, threshold), {"out": out}
    return make


def _input(value_factory, *, out_dtype=np.float64, which="x"):
    """A call whose x (or grad_output) is bad, with a sentinel out of the valid shape."""
    def make(func):
        bad = value_factory()
        n = np.shape(np.asarray(bad, dtype=object)) if isinstance(bad, list) else np.shape(bad)
        n = n[0] if n else 1
        if which == "grad_output":
            if func != "softplus_backward":
                return None
            return (bad, _x(n=n)), {"out": _out(out_dtype, n)}
        return _args(func, bad, g=np.ones(n)), {"out": _out(out_dtype, n)}
    return make


def _outcall(out_factory):
    def make(func):
        return _args(func, _x()), {"out": out_factory()}
    return make


def _read_only_out():
    o = _out()
    o.flags.writeable = False
    return o


def _read_only_in_place(func):
    x = _x()
    x.flags.writeable = False
    return _args(func, x), {"out": x}


class _Obj:
    """An arbitrary object: no numeric value."""



BAD_CALLS = [
    # beta: ValueError for numbers out of range, TypeError for non-numbers (API.md)
    Bad("beta=0", _param(beta=0.0), ValueError, r"\bbeta\b"),
    Bad("beta=-1", _param(beta=-1), ValueError, r"\bbeta\b"),
    Bad("beta=nan", _param(beta=math.nan), ValueError, r"\bbeta\b"),
    Bad("beta=inf", _param(beta=math.inf), ValueError, r"\bbeta\b"),
    Bad("beta=-inf", _param(beta=-math.inf), ValueError, r"\bbeta\b"),
    Bad("beta='2'", _param(beta="2"), TypeError, r"\bbeta\b"),
    Bad("beta=None", _param(beta=None), TypeError, r"\bbeta\b"),
    Bad("beta=True", _param(beta=True), TypeError, r"\bbeta\b"),
    Bad("beta=1j", _param(beta=1j), TypeError, r"\bbeta\b"),
    Bad("beta=[2.0]", _param(beta=[2.0]), TypeError, r"\bbeta\b"),
    Bad("beta=nan in place", _param(beta=math.nan, in_place=True), ValueError, r"\bbeta\b"),
    Bad("beta=0 in place", _param(beta=0, in_place=True), ValueError, r"\bbeta\b"),
    Bad("beta=1e300 float32", lambda f: ((*_args(f, _x(np.float32)), 1e300),
                                         {"out": _out(np.float32)}), ValueError, r"\bbeta\b"),
    Bad("beta=1e-300 float32 in place", lambda f: (lambda x: ((*_args(f, x), 1e-300), {"out": x}))(
        _x(np.float32)), ValueError, r"\bbeta\b"),
    # threshold
    Bad("threshold=nan", _param(threshold=math.nan), ValueError, r"\bthreshold\b"),
    Bad("threshold=float32 nan", _param(threshold=np.float32("nan")), ValueError, r"\bthreshold\b"),
    Bad("threshold=nan in place", _param(threshold=math.nan, in_place=True), ValueError,
        r"\bthreshold\b"),
    Bad("threshold='20'", _param(threshold="20"), TypeError, r"\bthreshold\b"),
    Bad("threshold=True", _param(threshold=True), TypeError, r"\bthreshold\b"),
    # unsupported dtypes: TypeError naming the argument and the dtype
    Bad("complex128", _input(lambda: _x().astype(complex)), TypeError, "{name}.*complex128"),
    Bad("complex64", _input(lambda: _x().astype(np.complex64)), TypeError, "{name}.*complex64"),
    Bad("object array", _input(lambda: _x().astype(object)), TypeError, "{name}.*object"),
    Bad("str array", _input(lambda: np.array(["1.0", "2.0"])), TypeError, "{name}.*<U3"),
    Bad("bytes array", _input(lambda: np.array([b"1", b"2"])), TypeError, "{name}.*S1"),
    Bad("datetime64", _input(lambda: np.array(["2020-01-01", "2021-01-01"], "datetime64[D]")),
        TypeError, r"{name}.*datetime64"),
    Bad("timedelta64", _input(lambda: np.array([1, 2], "timedelta64[s]")), TypeError,
        r"{name}.*timedelta64"),
    Bad("structured", _input(lambda: np.zeros(3, dtype=[("a", "f8")])), TypeError, "{name}.*dtype"),
    Bad("complex grad_output", _input(lambda: np.ones(8, complex), which="grad_output"),
        TypeError, r"\bgrad_output\b.*complex128"),
    Bad("str grad_output", _input(lambda: np.array(["a"] * 8), which="grad_output"),
        TypeError, r"\bgrad_output\b"),
    # strings, objects, ragged lists
    Bad("str", _input(lambda: "1.5"), TypeError, "{name}"),
    Bad("bytes", _input(lambda: b"1.5"), TypeError, "{name}"),
    Bad("list of str", _input(lambda: ["1.0", "2.0"]), TypeError, "{name}"),
    Bad("object()", _input(lambda: _Obj()), TypeError, "{name}"),
    Bad("list with None", _input(lambda: [1.0, None, 3.0]), TypeError, "{name}"),
    Bad("list with object", _input(lambda: [1.0, _Obj()]), TypeError, "{name}"),
    Bad("complex scalar", _input(lambda: 1 + 2j), TypeError, "{name}.*complex"),
    Bad("ragged list", _input(lambda: [[1.0, 2.0], [3.0]]), ValueError, "{name}"),
    Bad("ragged nested", _input(lambda: [[1.0], [2.0, [3.0]]]), ValueError, "{name}"),
    Bad("ragged grad_output", _input(lambda: [[1.0, 2.0], [3.0]], which="grad_output"),
        ValueError, r"\bgrad_output\b"),
    # out
    Bad("out float32 for float64", _outcall(lambda: _out(np.float32)), TypeError, r"\bout\b"),
    Bad("out int64", _outcall(lambda: _out(np.int64)), TypeError, r"\bout\b"),
    Bad("out complex", _outcall(lambda: _out(np.complex128)), TypeError, r"\bout\b"),
    Bad("out float64 for float32", lambda f: (_args(f, _x(np.float32)), {"out": _out(np.float64)}),
        TypeError, r"\bout\b"),
    Bad("out float32 for int input", lambda f: (_args(f, np.arange(8)), {"out": _out(np.float32)}),
        TypeError, r"\bout\b"),
    Bad("out int input in place", lambda f: (lambda x: (_args(f, x), {"out": x}))(np.arange(8)),
        TypeError, r"\bout\b"),
    Bad("out too long", _outcall(lambda: _out(n=9)), ValueError, r"\bout\b"),
    Bad("out 2-D", _outcall(lambda: np.full((8, 1), SENTINEL)), ValueError, r"\bout\b"),
    Bad("out 0-d", _outcall(lambda: np.array(SENTINEL)), ValueError, r"\bout\b"),
    Bad("out list", _outcall(lambda: [SENTINEL] * 8), TypeError, r"\bout\b"),
    Bad("out read-only", _outcall(_read_only_out), ValueError, r"\bout\b.*read-only"),
    Bad("out read-only in place", _read_only_in_place, ValueError, r"\bout\b.*read-only"),
    # backend
    Bad("backend='nope'", lambda f: (_args(f, _x()), {"out": _out(), "backend": "nope"}),
        ValueError, r"\bbackend\b.*cython.*numba.*numpy"),
    Bad("backend=3", lambda f: (_args(f, _x()), {"out": _out(), "backend": 3}), TypeError,
        r"\bbackend\b"),
    Bad("backend='NUMPY' in place", lambda f: (lambda x: (_args(f, x), {"out": x,
                                                                       "backend": "NUMPY"}))(_x()),
        ValueError, r"\bbackend\b"),
    # shapes that do not broadcast (backward only)
    Bad("backward shapes", lambda f: ((np.ones(3), _x()), {"out": _out()})
        if f == "softplus_backward" else None, ValueError, r"grad_output.*\bx\b"),
]


def _snapshot(obj: Any) -> Any:
    """What must not change: an array's bytes (plus dtype, shape, strides), a deep copy else."""
    if isinstance(obj, np.ndarray):
        return ("ndarray", obj.dtype, obj.shape, obj.strides,
                obj.tobytes() if obj.dtype != object else copy.deepcopy(obj.tolist()))
    return ("object", repr(obj) if not isinstance(obj, _Obj) else id(obj))


def _same(a, b) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "ndarray":
        return a[1:4] == b[1:4] and a[4] == b[4]
    return a[1] == b[1]


# (func, bad call) pairs that apply (make() returns None for a backward-only case elsewhere)
PAIRS = [pytest.param(f, b, id=f"{f}-{b.name}") for f in FUNCS for b in BAD_CALLS
         if b.make(f) is not None]


@pytest.mark.parametrize("func,bad", PAIRS)
def test_rejected_call_loses_nothing(backend, func, bad):
    args, kwargs = bad.make(func)
    kwargs.setdefault("backend", backend)
    n_inputs = 2 if func == "softplus_backward" else 1
    touched = [*args[:n_inputs], kwargs["out"]]
    before = [_snapshot(o) for o in touched]
    pattern = bad.pattern.format(name=rf"\b{_arg_name(func)}\b")
    with pytest.raises(bad.exc) as ei:
        getattr(fsp, func)(*args, **kwargs)
    msg = str(ei.value)
    assert re.search(pattern, msg), f"{bad.name}: message {msg!r} does not match {pattern!r}"
    for i, (o, b) in enumerate(zip(touched, before)):
        what = "out" if i == len(touched) - 1 else f"argument {i}"
        assert _same(_snapshot(o), b), f"{bad.name}: {what} changed by a rejected call"


@pytest.mark.parametrize("func", FUNCS)
def test_arrays_still_usable_after_rejections(backend, func):
    """After a burst of rejected calls on the same arrays, a valid call gives the right result."""
    x = _x()
    out = _out()
    want = getattr(fsp, func)(*_args(func, x.copy()), backend="numpy")
    for bad in (dict(beta=0.0), dict(beta="2"), dict(threshold=math.nan), dict(backend="nope")):
        kw = {"out": out, "backend": backend, **bad}
        with pytest.raises((TypeError, ValueError)):
            getattr(fsp, func)(*_args(func, x), **kw)
    assert (out == SENTINEL).all()
    got = getattr(fsp, func)(*_args(func, x), out=out, backend=backend)
    assert got is out
    arrays.assert_ulp(out, want, 2, what=f"{backend} {func} after rejected calls")


def test_unavailable_backend_loses_nothing(monkeypatch):
    """A known backend that cannot load: BackendUnavailableError, out and x untouched."""
    from fastsoftplus import _dispatch
    monkeypatch.setitem(_dispatch.BACKENDS, "broken", "fastsoftplus._no_such_backend_for_rel")
    x = _x()
    for out in (_out(), x):
        before = (x.tobytes(), out.tobytes())
        with pytest.raises(fsp.BackendUnavailableError, match="broken"):
            fsp.softplus(x, out=out, backend="broken")
        assert (x.tobytes(), out.tobytes()) == before
