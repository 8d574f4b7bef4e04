"""Reliability (issue 7, part 3): fuzzing the public functions with hypothesis.

Each example draws: function x backend (or the automatic choice) x dtype (float16/32/64, integers,
bool, and unsupported ones) x byte order x shape (0-3-D, empty, or one large 1-D array beyond the
parallel cut-off) x strides (steps +-1/+-2, transposed, unaligned) x read-only x container (array,
list, Python scalar) x values (any float bits: NaN, infinities, subnormals, the specials of
``arrays.specials``) x beta x threshold (valid and invalid) x grad_output (same shape, scalar,
broadcast row, another dtype, x itself) x ``out`` (None, fresh, fresh byte-swapped, in place on x
or grad_output, a strided view of a sentinel buffer, partially overlapping x, and wrong ones).

A model of API.md predicts the outcome: either the documented errors (any of them, when several
apply: the contract does not order them), whose message names the argument, with nothing written;
or a result of the documented dtype and shape within the ULP bounds of test_backends.py
(``allowed_ulps``) of the reference backend evaluated on copies of the inputs, returned in ``out``
when given, and every byte outside the result left alone.

The default run draws FUZZ_EXAMPLES examples; ``FASTSOFTPLUS_STRESS=1`` runs STRESS_EXAMPLES.
"""

from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastsoftplus as fsp  # noqa: E402
from fastsoftplus import _dispatch  # noqa: E402
from fastsoftplus import _reference as R  # noqa: E402

import arrays  # noqa: E402
import test_backends as TB  # noqa: E402  (allowed_ulps: the ULP bounds of the backend tests)

#: Examples in the default run (~5 s on the 2-core machine).
FUZZ_EXAMPLES = 200
#: Examples with FASTSOFTPLUS_STRESS=1 (the issue asks for >= 1e4).
STRESS_EXAMPLES = 10_000
STRESS = os.environ.get("FASTSOFTPLUS_STRESS") == "1"

BACKENDS = fsp.available_backends()
FUNCS = arrays.FUNCS
GOOD_DTYPES = [np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int8, np.uint8,
                                     np.int16, np.int32, np.int64, np.uint64, np.bool_)]
BAD_DTYPES = [np.dtype(t) for t in (np.complex64, np.complex128, object, "U3", "S3",
                                    "datetime64[D]", "timedelta64[s]")]
if np.dtype(np.longdouble) != np.dtype(np.float64):
    BAD_DTYPES.append(np.dtype(np.longdouble))
#: One large 1-D case: beyond PARALLEL_MIN_SIZE, so the multi-threaded paths run.
LARGE = _dispatch.PARALLEL_MIN_SIZE + 3
SENTINEL = -7.25  # fills out buffers; exactly representable in float16 too

_F64 = np.dtype(np.float64)
_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)


# --- building the inputs ---------------------------------------------------------------------------

class Layout(NamedTuple):
    """How a view is cut from a 1-D buffer: ``buf[offset:offset+P].reshape(pshape)[steps]``,
    then transposed if asked."""
    offset: int
    pshape: tuple
    steps: tuple
    transpose: bool

    @property
    def size(self) -> int:
        return math.prod(self.pshape)

    def view(self, buf: np.ndarray) -> np.ndarray:
        v = buf[self.offset:self.offset + self.size].reshape(self.pshape)
        if self.steps:  # (v[()] of a 0-d array would be a scalar, not a view)
            v = v[tuple(slice(None, None, s) for s in self.steps)]
        return v.T if self.transpose else v


@st.composite
def layouts(draw, shape: tuple, max_offset: int = 2) -> Layout:
    steps = tuple(draw(st.sampled_from([1, 1, 2, -1, -2])) for _ in shape)
    pshape = tuple(n * abs(s) for n, s in zip(shape, steps))
    transpose = len(shape) > 1 and draw(st.booleans())
    if transpose:  # the view is transposed afterwards: cut the transposed shape
        pshape, steps = pshape[::-1], steps[::-1]
    return Layout(draw(st.integers(0, max_offset)), pshape, steps, transpose)


def float_elements(dt: np.dtype):
    width = dt.itemsize * 8
    sp = [float(v) for v in arrays.specials(dt)]
    return st.one_of(st.floats(width=width),  # any bits: NaN, inf, subnormals, huge
                     st.floats(-40, 40, width=width),  # where the functions bend
                     st.sampled_from(sp))


def elements(dt: np.dtype):
    if dt.kind == "f":
        return float_elements(dt)
    if dt.kind == "b":
        return st.booleans()
    return hnp.from_dtype(dt)


@st.composite
def buffers(draw, dt: np.dtype, n: int, large: bool) -> np.ndarray:
    """A 1-D buffer of ``n`` elements of ``dt`` (any byte order)."""
    native = dt.newbyteorder("=")
    if dt in BAD_DTYPES or native in BAD_DTYPES:
        with np.errstate(all="ignore"):
            return np.arange(n).astype(dt)
    if large:  # hypothesis draws a short pattern; repeat it (drawing 65k elements is slow)
        pat = draw(hnp.arrays(native, st.integers(1, 64), elements=elements(native)))
        return np.resize(pat, n).astype(dt)
    return draw(hnp.arrays(native, n, elements=elements(native))).astype(dt)


def _unaligned(a: np.ndarray) -> np.ndarray:
    raw = np.empty(a.nbytes + 1, np.uint8)
    u = raw[1:].view(a.dtype)
    u[...] = a
    return u


class Case(NamedTuple):
    func: str
    backend: str | None
    x: Any            # as passed
    g: Any            # grad_output as passed (backward), else None
    beta: Any
    threshold: Any
    out: Any          # as passed (None: no out)
    out_mode: str
    buffers: dict     # name -> 1-D buffer whose bytes must survive (outside the result)
    out_layout: tuple | None  # (buffer name, Layout) that out is a view of


@st.composite
def cases(draw) -> Case:
    func = draw(st.sampled_from(FUNCS))
    backend = draw(st.sampled_from(BACKENDS + (None,)))
    # out first: the modes writing into an input need a float x to be valid, so they get one
    # most of the time (else most of them would only exercise the dtype error)
    out_mode = draw(st.sampled_from(
        ["none"] * 6 + ["fresh"] * 2 + ["inplace"] * 3 + ["strided"] * 2 + ["overlap"] * 2
        + ["fresh_swapped", "inplace_g", "wrong_dtype", "wrong_shape", "readonly", "list"]))
    writes_input = out_mode in ("inplace", "inplace_g", "overlap")
    if draw(st.integers(0, 19)) == 0:
        dt = draw(st.sampled_from(BAD_DTYPES))
    elif writes_input and draw(st.integers(0, 5)):
        dt = draw(st.sampled_from([_F16, _F32, _F64]))
    else:
        dt = draw(st.sampled_from(GOOD_DTYPES))
    if dt.itemsize > 1 and dt.kind in "biuf" and draw(st.booleans()):
        dt = dt.newbyteorder("S")
    large = draw(st.integers(0, 24)) == 0
    shape = (LARGE + draw(st.integers(0, 50)),) if large else draw(
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    lay = draw(layouts(shape))
    buf = draw(buffers(dt, lay.size + 4, large))
    if dt.itemsize > 1 and dt.kind != "O" and draw(st.integers(0, 9)) == 0:
        buf = _unaligned(buf)
    x = lay.view(buf)
    assert x.shape == shape
    bufs = {"x": buf}
    if draw(st.integers(0, 14)) == 0:
        buf.flags.writeable = False  # x (a view) is read-only too
        x = lay.view(buf)

    # grad_output
    g = None
    if func == "softplus_backward":
        mode = draw(st.sampled_from(["same", "same", "scalar", "row", "other", "x"]))
        gdt = dt if dt.kind == "f" else _F64
        if mode == "other":
            gdt = draw(st.sampled_from([_F16, _F32, _F64, np.dtype(np.int32), np.dtype(np.bool_)]))
        if mode == "scalar":
            g = draw(st.one_of(st.floats(-10, 10), st.sampled_from([2, math.inf, math.nan])))
        elif mode == "x":
            g = x
        else:
            gshape = shape[-1:] if mode == "row" else shape
            glay = draw(layouts(gshape))
            gbuf = draw(buffers(gdt, glay.size + 4, large and mode != "row"))
            bufs["g"] = gbuf
            g = glay.view(gbuf)

    # container: most often the array itself
    container = draw(st.sampled_from(["array"] * 9 + ["list"]))
    if container == "list" and not large and x.size:  # (an empty list loses inner dims)
        x = x.tolist() if x.ndim else draw(st.sampled_from([x.item(), x[()]]))  # NumPy scalar
        if g is not None and isinstance(g, np.ndarray) and "g" not in bufs:
            g = x  # g was x itself

    # beta and threshold: mostly valid, some invalid
    kind = draw(st.integers(0, 19))
    if kind < 11:
        beta = draw(st.sampled_from([1.0, 1.0, 1.0, 0.5, 2.0, 10.0, 3, np.float32(2.0),
                                     Fraction(1, 2), np.array(0.25)]))
    elif kind < 18:
        beta = draw(st.floats(1e-3, 1e3))
    else:
        beta = draw(st.sampled_from([0.0, -0.0, -1.0, math.nan, math.inf, -math.inf, 1e300,
                                     1e-300, 1e39, 1e-46, "2", None, True, 1j, [1.0]]))
    kind = draw(st.integers(0, 19))
    if kind < 12:
        threshold = draw(st.sampled_from([20.0, 20.0, None, math.inf, -math.inf, 1.0, 0.0,
                                          -5.0, 20, 88.5, 709.5, 1e300, -1e300]))
    elif kind < 19:
        threshold = draw(st.floats(-100, 100))
    else:
        threshold = draw(st.sampled_from([math.nan, np.float32("nan"), "20", True]))

    # out
    out, out_layout = None, None
    rshape = _result_shape(x, g)
    rdt = _result_dtype(x, g)
    odt = rdt if rdt is not None else _F64
    if out_mode == "fresh":
        out = np.full(rshape, SENTINEL, odt)
    elif out_mode == "fresh_swapped":
        out = np.full(rshape, SENTINEL, odt.newbyteorder("S"))
    elif out_mode == "inplace":
        out = x
    elif out_mode == "inplace_g":
        out = g if func == "softplus_backward" else x
    elif out_mode == "strided":
        olay = draw(layouts(rshape))
        obuf = np.full(olay.size + 4, SENTINEL, odt)
        bufs["out"] = obuf
        out, out_layout = olay.view(obuf), ("out", olay)
    elif out_mode == "overlap":  # the same cut of x's buffer, one element off
        if isinstance(x, np.ndarray) and x.base is not None and buf.flags.writeable:
            olay = lay._replace(offset=lay.offset + draw(st.sampled_from([-1, 1])))
            if olay.offset < 0:
                olay = olay._replace(offset=lay.offset + 1)
            out, out_layout = olay.view(buf), ("x", olay)
        else:
            out = np.full(rshape, SENTINEL, odt)
    elif out_mode == "wrong_dtype":
        out = np.full(rshape, SENTINEL, draw(st.sampled_from(
            [d for d in (_F16, _F32, _F64, np.dtype(np.int64), np.dtype(np.complex128))
             if d != odt])))
    elif out_mode == "wrong_shape":
        wrong = [rshape + (1,), (1,) + rshape, ()] + ([(rshape[0] + 1,) + rshape[1:]]
                                                        if rshape else [])
        out = np.full(draw(st.sampled_from([w for w in wrong if w != rshape])), SENTINEL, odt)
    elif out_mode == "readonly":
        out = np.full(rshape, SENTINEL, odt)
        out.flags.writeable = False
    elif out_mode == "list":
        out = np.full(rshape, SENTINEL).tolist()
    return Case(func, backend, x, g, beta, threshold, out, out_mode, bufs, out_layout)


# --- the model of API.md ---------------------------------------------------------------------------

def _as_array(a):
    try:
        return np.asarray(a)
    except (ValueError, TypeError):
        return None


def _supported(dt: np.dtype) -> bool:
    return dt.kind in "biu" or (dt.kind == "f" and dt.itemsize <= 8)


def _result_dtype(x, g) -> np.dtype | None:
    """The documented result dtype (None when an input is unsupported)."""
    ins = [x] if g is None else [g, x]
    arrs = [_as_array(i) for i in ins]
    if any(a is None or not _supported(a.dtype) for a in arrs):
        return None
    # numpy promotion, Python scalars weak (as a ufunc), then bool/integers -> float64
    dt = np.result_type(*(i if type(i) in (float, int) else a for i, a in zip(ins, arrs)))
    return _F64 if dt.kind in "biu" else dt.newbyteorder("=")


def _result_shape(x, g) -> tuple:
    shapes = [np.shape(i) for i in ([x] if g is None else [g, x])]
    return np.broadcast_shapes(*shapes)


def _real_or_error(v, name) -> tuple[float | None, list]:
    """(the float, []) or (None, [(exception type, argument name)])."""
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
        v = v[()]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, Fraction, np.number)) \
            or isinstance(v, complex) or (isinstance(v, np.number) and v.dtype.kind == "c"):
        return None, [(TypeError, name)]
    return float(v), []


def expected_errors(c: Case) -> list[tuple[type, str]]:
    """Every documented error that applies to the call: (exception type, argument named)."""
    errs = []
    beta, e = _real_or_error(c.beta, "beta")
    errs += e
    if beta is not None and (not beta > 0 or math.isinf(beta)):
        errs.append((ValueError, "beta"))
    if c.threshold is not None:
        t, e = _real_or_error(c.threshold, "threshold")
        errs += e
        if t is not None and math.isnan(t):
            errs.append((ValueError, "threshold"))
    xname = "y" if c.func == "softplus_inverse" else "x"
    for v, name in ((c.x, xname), (c.g, "grad_output")):
        if name == "grad_output" and c.func != "softplus_backward":
            continue
        a = _as_array(v)
        if a is None or not _supported(a.dtype):
            errs.append((TypeError, name))
    rdt = _result_dtype(c.x, c.g if c.func == "softplus_backward" else None)
    if rdt is not None and rdt in (_F16, _F32) and beta is not None and beta > 0 \
            and not math.isinf(beta):
        with np.errstate(all="ignore"):
            b32 = np.float32(beta)
        if b32 == 0 or np.isinf(b32):  # beta not representable in float32, the precision used
            errs.append((ValueError, "beta"))
    if c.out is not None and rdt is not None:
        o = c.out
        shape = _result_shape(c.x, c.g if c.func == "softplus_backward" else None)
        if not isinstance(o, np.ndarray):
            errs.append((TypeError, "out"))
        else:
            if o.dtype.newbyteorder("=") != rdt or o.dtype.kind != "f":
                errs.append((TypeError, "out"))
            if o.shape != shape:
                errs.append((ValueError, "out"))
            if not o.flags.writeable:
                errs.append((ValueError, "out"))
    return errs


# --- the check -------------------------------------------------------------------------------------

def _snapshot(bufs: dict) -> dict:
    return {k: b.tolist() if b.dtype.hasobject else b.tobytes() for k, b in bufs.items()}


def _covered(c: Case, name: str) -> np.ndarray | None:
    """Boolean mask of the elements of buffer ``name`` that ``out`` covers (may be written)."""
    mask = np.zeros(len(c.buffers[name]), bool)
    if c.out_layout is not None and c.out_layout[0] == name:
        idx = c.out_layout[1].view(np.arange(len(mask)))
        mask[idx.ravel()] = True
    elif isinstance(c.out, np.ndarray) and np.may_share_memory(c.out, c.buffers[name]):
        return None  # in place on this input: every element may change
    return mask


def check(c: Case) -> None:
    bwd = c.func == "softplus_backward"
    ins = (c.g, c.x) if bwd else (c.x,)
    # copies of the inputs as the oracle will see them (before an in-place call changes them)
    copies = [np.array(_as_array(i), copy=True) if _as_array(i) is not None else None
              for i in ins]
    before = _snapshot(c.buffers)
    out_before = c.out.tobytes() if isinstance(c.out, np.ndarray) else repr(c.out)
    errs = expected_errors(c)
    try:
        res = getattr(fsp, c.func)(*ins, c.beta, c.threshold, out=c.out, backend=c.backend)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        event(f"rejected: {type(exc).__name__}")
        assert errs, f"unexpected {type(exc).__name__}: {msg}"
        assert any(type(exc) is t and re.search(rf"\b{n}\b", msg) for t, n in errs), (
            f"{type(exc).__name__}({msg!r}) is none of the expected {errs}")
        assert _snapshot(c.buffers) == before, "a rejected call changed an input or out buffer"
        if isinstance(c.out, np.ndarray):
            assert c.out.tobytes() == out_before, "a rejected call wrote to out"
        return
    assert not errs, f"expected one of {errs}, the call returned {type(res).__name__}"
    event(f"computed, out={c.out_mode}")

    rdt = _result_dtype(c.x, c.g if bwd else None)
    shape = _result_shape(c.x, c.g if bwd else None)
    if c.out is not None:
        assert res is c.out, "out was not returned"
    elif shape == ():
        assert isinstance(res, np.generic), f"scalar/0-d input gave {type(res).__name__}"
    got = np.asarray(res)
    assert got.shape == shape
    assert got.dtype.newbyteorder("=") == rdt, f"dtype {got.dtype}, expected {rdt}"

    # the oracle: the reference backend on the copies, in the computation dtype
    cdt = _F32 if rdt == _F16 else rdt
    beta = float(c.beta if not isinstance(c.beta, np.ndarray) else c.beta[()])
    threshold = math.inf if c.threshold is None else float(c.threshold)
    with np.errstate(all="ignore"):
        oracle_ins = [np.broadcast_to(a.astype(cdt), shape) for a in copies]
        want = R.evaluate(c.func, *oracle_ins, beta=beta, threshold=threshold).astype(rdt)
    allowed = TB.allowed_ulps(c.func, oracle_ins[-1], beta, rdt)
    arrays.assert_ulp(got.astype(rdt), want, allowed,
                      inputs={n: a for n, a in zip(("g", "x") if bwd else ("x",), oracle_ins)},
                      what=f"{c.backend} {c.func} beta={c.beta!r} threshold={c.threshold!r} "
                           f"out={c.out_mode}")

    # nothing outside the result changed
    after = _snapshot(c.buffers)
    for name, buf in c.buffers.items():
        mask = _covered(c, name)
        if mask is None:
            continue
        if buf.dtype.hasobject:  # never written (out is never an object array here)
            assert after[name] == before[name], f"the {name} buffer changed"
            continue
        b0 = np.frombuffer(before[name], buf.dtype)
        b1 = np.frombuffer(after[name], buf.dtype)
        changed = b0.view(np.uint8).reshape(len(b0), -1) != b1.view(np.uint8).reshape(len(b1), -1)
        bad = changed.any(axis=1) & ~mask
        assert not bad.any(), f"{int(bad.sum())} elements of the {name} buffer outside the " \
                              f"result changed"


SETTINGS = dict(deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


@settings(max_examples=FUZZ_EXAMPLES, **SETTINGS)
@given(cases())
def test_fuzz(c):
    check(c)


@pytest.mark.stress
@pytest.mark.skipif(not STRESS, reason=f"{STRESS_EXAMPLES} fuzz examples run only with "
                                       "FASTSOFTPLUS_STRESS=1")
@settings(max_examples=STRESS_EXAMPLES, **SETTINGS)
@given(cases())
def test_fuzz_stress(c):
    check(c)
