"""The Numba backend (fastsoftplus._numba): ufuncs, run() on every layout, threads, fork, import
cost, threading-layer choice, the disk cache, and a SIMD check of the compiled kernels.

The scalar math is the lead's (``_nbkernels.py``) and its accuracy is tested in test_accuracy.py;
here accuracy is checked only to catch wiring mistakes (wrong kernel, dtype, beta or layout):
against ``fastsoftplus._reference`` within 1 ULP, for betas that are powers of two (where
rounding ``beta*x`` is exact and every formulation agrees).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

numba = pytest.importorskip("numba")
nb = pytest.importorskip("fastsoftplus._numba")

import arrays  # noqa: E402
from fastsoftplus import _reference  # noqa: E402

FUNCS = nb.FUNCS
DTYPES = (np.float32, np.float64)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(nb.__file__)))
BIG = 6 * nb.BLOCK_SIZE + 123  # several blocks (and above the dispatcher's thread floor)


def inputs(func, x, g=None):
    """The ``arrays`` tuple of run() for ``func``; softplus_backward's g defaults to x reversed."""
    if func != "softplus_backward":
        return (x,)
    return (np.flip(x).copy() if g is None else g, x)


def call(func, arrays_, beta=1.0, threshold=20.0, nthreads=1, out=None):
    if out is None:
        out = np.empty(np.broadcast_shapes(*(a.shape for a in arrays_)), arrays_[-1].dtype)
    nb.run(func, arrays_, out, beta, threshold, nthreads)
    return out


def run_python(code, env=None, timeout=180):
    """Run ``code`` in a fresh interpreter with the project on sys.path; return the completed process.

    ``env`` entries are added to the environment; NUMBA_THREADING_LAYER* is dropped unless given.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join([ROOT, full_env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# --- SIMD check: every kernel loop vectorizes and calls no libm function ----------------------

#: libm entry points that must not be called from a kernel loop (a call keeps the loop scalar).
_LIBM = ("exp", "expf", "exp2", "exp2f", "expm1", "expm1f", "log", "logf", "log1p", "log1pf",
         "log2", "log2f", "pow", "powf", "fmax", "fmaxf", "fmin", "fminf", "floor", "floorf",
         "ldexp", "ldexpf", "frexp", "frexpf")
_LIBM_RE = re.compile(r"(?:\$|call\w*\s+)(" + "|".join(_LIBM) + r")(?:@PLT)?\b")
# packed floating-point arithmetic on 256/512-bit registers (moves and shuffles not counted)
_VECTOR_RE = re.compile(
    r"^\s*v(?:add|sub|mul|div|max|min|sqrt|fn?madd\d*|fn?msub\d*|rndscale|cmp\w*)p[sd]\b[^\n]*%([yz])mm",
    re.M)


def simd_report(dispatcher) -> dict:
    """What the compiled code of a numba dispatcher's first signature looks like.

    Returns ``{"vector_ops": n, "zmm": n, "libm_calls": [...]}``: counts of packed arithmetic
    instructions on ymm/zmm registers (how many use zmm), and the libm functions it calls.
    """
    asm = dispatcher.inspect_asm(dispatcher.signatures[0])
    regs = _VECTOR_RE.findall(asm)
    return {"vector_ops": len(regs), "zmm": regs.count("z"),
            "libm_calls": sorted(set(_LIBM_RE.findall(asm)))}


def assert_simd(dispatcher, what=""):
    """The loop was vectorized (packed ymm/zmm arithmetic) and calls no libm function."""
    r = simd_report(dispatcher)
    assert not r["libm_calls"], f"{what}: calls {r['libm_calls']} (the loop stays scalar)"
    assert r["vector_ops"] > 0, f"{what}: no packed ymm/zmm arithmetic: not vectorized ({r})"


def _cpu_has(flag):
    try:
        with open("/proc/cpuinfo") as f:
            return f" {flag}" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _cpu_has("avx2"), reason="needs an x86-64 CPU with AVX2 (/proc/cpuinfo)")
def test_simd_check_itself():
    """The checker passes a vectorizable loop and fails one calling libm."""
    @numba.njit(error_model="numpy")
    def poly(x, out):
        for i in range(x.shape[0]):
            out[i] = x[i] * (x[i] * 0.5 + 1.0) + 1.0

    @numba.njit(error_model="numpy")
    def libm(x, out):
        for i in range(x.shape[0]):
            out[i] = math.log1p(math.exp(x[i]))

    x = np.linspace(-1, 1, 64)
    poly(x, np.empty_like(x))
    libm(x, np.empty_like(x))
    assert_simd(poly, "poly")
    assert simd_report(libm)["libm_calls"]
    with pytest.raises(AssertionError, match="calls"):
        assert_simd(libm, "libm")


@pytest.mark.slow  # 16 uncached compiles: ~90 s on 2 cores
@pytest.mark.skipif(not _cpu_has("avx2"), reason="needs an x86-64 CPU with AVX2 (/proc/cpuinfo)")
@pytest.mark.parametrize("mode", ["ser", "par"])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("func", FUNCS)
def test_kernels_vectorize(func, dtype, mode):
    if mode == "par":
        nb._setup_threading()
        if not nb._parallel_ok:
            pytest.skip(f"no threading layer: {nb._layer}")
    nb._register_kernels()
    # compiled afresh, uncached: numba cannot show the assembly of code loaded from its cache
    opts = {**nb._jit_options(False), "parallel": mode == "par"}
    py = nb._renamed(nb._PY_KERNELS[func, mode], "_inspect")
    disp = numba.njit([nb._kernel_signature(func, dtype, mode)], **opts)(py)
    assert_simd(disp, f"{func} {dtype} {mode}")
    if _cpu_has("avx512f") and numba.config.CPU_NAME in (None, "host"):
        # _nbkernels.wide_vectors: 512-bit vectors as in the C loops (LLVM's Intel tuning
        # otherwise prefers 256 bits, 1.2-1.6x slower here)
        assert simd_report(disp)["zmm"] > 0, f"{func} {dtype} {mode}: no zmm arithmetic"


def _fenv():
    """(feclearexcept, fetestexcept, FE_UNDERFLOW) from the C library, or None off x86-64 Linux."""
    import ctypes
    import ctypes.util
    import platform
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return None
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    return libm.feclearexcept, libm.fetestexcept, 0x10  # FE_UNDERFLOW in glibc's x86 <fenv.h>


def _loop_raises_underflow(fn, x, out, backward, with_beta):
    """Whether a vectorized numba loop of kernel `fn` (threshold inf; beta 1 if `with_beta`, for
    the kernels that take one) over `x` raises the underflow flag."""
    dtype = x.dtype.type
    one, inf = dtype(1.0), dtype(np.inf)
    if backward and with_beta:
        @numba.njit
        def loop(x, out):
            for i in range(x.shape[0]):
                out[i] = fn(one, x[i], one, inf)
    elif backward:
        @numba.njit
        def loop(x, out):
            for i in range(x.shape[0]):
                out[i] = fn(one, x[i], inf)
    elif with_beta:
        @numba.njit
        def loop(x, out):
            for i in range(x.shape[0]):
                out[i] = fn(x[i], one, inf)
    else:
        @numba.njit
        def loop(x, out):
            for i in range(x.shape[0]):
                out[i] = fn(x[i], inf)
    loop(x[:16], out[:16])  # compile first: the compiler's own arithmetic must not count
    clear, test, underflow = _fenv()
    clear(underflow)
    loop(x, out)
    raised = test(underflow)
    clear(underflow)
    return bool(raised)


@pytest.mark.skipif(_fenv() is None, reason="reads the x86-64 glibc floating-point flags")
@pytest.mark.parametrize("kernel", ["softplus1_f32", "grad1_f32", "backward1_f32"])
def test_float32_kernels_no_underflow_where_result_is_normal(kernel):
    """No intermediate of the float32 beta == 1 kernels underflows unless the result itself is
    subnormal: Intel cores take a microcode assist for each such vector instruction (softplus at
    x in [-60, -40] ran 17x slower before _constants.F32_TINY). The loop vectorizes, so every
    lane of every intermediate is computed; the flag is the C library's, this thread's."""
    from fastsoftplus import _nbkernels as k
    if not nb._target_has_fma():
        pytest.skip("the float32 kernels need an FMA (else the float64 evaluation runs)")
    rng = np.random.default_rng(0)
    # every result kept below is 0 or a normal float32 (both are subnormal from -87.3 to -103.3)
    x = np.concatenate([rng.uniform(lo, hi, 4096) for lo, hi in
                        [(-87, -60), (-60, -40), (-40, -20), (-20, 20), (20, 45), (45, 200)]]
                       + [np.array([-1e9, -np.inf, np.inf, 1e9, -104.0, -150.0, 87.0, 100.0])])
    x = x.astype(np.float32)
    x = x[(x > -87.0) | (x <= -104.0)]  # below -104 the exact result, 0, underflows nothing
    out = np.empty_like(x)
    raised = _loop_raises_underflow(getattr(k, kernel), x, out, kernel.startswith("backward"),
                                    False)
    assert (np.abs(out[out != 0]) >= np.finfo(np.float32).tiny).all()
    assert not raised, f"{kernel}: an intermediate underflowed for inputs with normal results"


@pytest.mark.skipif(_fenv() is None, reason="reads the x86-64 glibc floating-point flags")
@pytest.mark.parametrize("kernel", ["softplus_f64", "grad_f64", "backward_f64"])
def test_float64_kernels_no_underflow_where_result_is_normal(kernel):
    """The same for float64: before a scaling bound (now the table reduction of _constants.py,
    whose reduced terms are normal except for |x| < ~1e-154, where d*d underflows), t**4, t**3, t**2 and t_lo of t = exp(-|x|)
    were subnormal for x in [-185, -177], [-247, -236], [-372, -354], [-705, -669]
    (softplus; grad at |x| in [354, 372] and [669, 705]) and ran 1.5-9x slower. Results are
    subnormal below x = -708.4; below -745 they are 0, with the flag rightly raised."""
    from fastsoftplus import _nbkernels as k
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(lo, hi, 4096) for lo, hi in
                        [(-708, -650), (-650, -300), (-300, -150), (-150, -40), (-40, 40),
                         (40, 350), (350, 710), (710, 1e5)]]
                       + [np.array([-708.0, np.inf, 1e300, 709.0])])
    out = np.empty_like(x)
    raised = _loop_raises_underflow(getattr(k, kernel), x, out, kernel.startswith("backward"),
                                    True)
    assert (np.abs(out[out != 0]) >= np.finfo(np.float64).tiny).all()
    assert not raised, f"{kernel}: an intermediate underflowed for inputs with normal results"


# --- The ufuncs -------------------------------------------------------------------------------

def test_ufuncs_are_real_numpy_ufuncs():
    table = nb.UFUNCS
    assert set(table) == set(FUNCS)
    for name, uf in table.items():
        assert isinstance(uf, np.ufunc), type(uf)
        assert uf.__name__ == name and getattr(nb, name) is uf
        assert uf.nin == (4 if name == "softplus_backward" else 3) and uf.nout == 1
        assert uf.types[:2] == [("f" * uf.nin) + "->f", ("d" * uf.nin) + "->d"], uf.types


def test_ufuncs_pickle_by_reference():
    for name in FUNCS:
        uf = getattr(nb, name)
        data = pickle.dumps(uf)
        assert b"fastsoftplus._numba" in data and len(data) < 100
        assert pickle.loads(data) is uf


def test_ufunc_unpickles_in_a_fresh_process():
    data = pickle.dumps(nb.softplus_grad).hex()
    proc = run_python(f"""
        import pickle, numpy as np
        uf = pickle.loads(bytes.fromhex("{data}"))
        print(type(uf).__name__, uf.__name__, float(uf(np.float64(0.0), 1.0, 20.0)))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ufunc", "softplus_grad", "0.5"]


def test_ufunc_dtypes():
    x32 = np.linspace(-5, 5, 11, dtype=np.float32)
    assert nb.softplus(x32, 1.0, 20.0).dtype == np.float32  # Python floats: the float32 loop
    assert nb.softplus(x32, 1.0, 20.0, dtype=np.float64).dtype == np.float64
    assert nb.softplus(x32.astype(np.float64), 1.0, 20.0).dtype == np.float64
    assert nb.softplus(np.arange(3), 1.0, 20.0).dtype == np.float64  # integers: float64
    np.testing.assert_array_equal(nb.softplus(x32, 1.0, 20.0), call("softplus", (x32,)))


def test_ufunc_where():
    assert nb.info().get("where") == "supported"
    x = np.linspace(-3, 3, 101)
    mask = x > 0.5
    out = np.full_like(x, -7.0)
    res = nb.softplus(x, 2.0, 20.0, out=out, where=mask)
    assert res is out
    np.testing.assert_array_equal(out[~mask], -7.0)
    np.testing.assert_array_equal(out[mask], call("softplus", (x,), beta=2.0)[mask])
    # a broadcast mask, two inputs
    g = np.ones((4, 101))
    out2 = np.zeros((4, 101))
    nb.softplus_backward(g, x, 1.0, 20.0, out=out2, where=mask[None, :])
    np.testing.assert_array_equal(out2[:, ~mask], 0.0)
    np.testing.assert_array_equal(out2[:, mask], np.broadcast_to(nb.softplus_grad(x, 1.0, 20.0)[mask],
                                                                  (4, mask.sum())))


def test_ufunc_out_and_broadcasting():
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    out = np.empty((3, 4))
    assert nb.softplus_inverse(x, 1.0, 20.0, out=out) is out
    g = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(nb.softplus_backward(g, x, 1.0, 20.0),
                                  g * nb.softplus_grad(x, 1.0, 20.0))


def test_ufunc_specials():
    for dt in DTYPES:
        x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dt)
        sp = nb.softplus(x, 2.0, 20.0)
        assert np.isnan(sp[0]) and sp[1] == np.inf and sp[2] == 0
        assert sp[3] == sp[4] == dt(math.log(2) / 2)
        gr = nb.softplus_grad(x, 1.0, 20.0)
        assert np.isnan(gr[0]) and gr[1] == 1 and gr[2] == 0 and gr[3] == 0.5
        inv = nb.softplus_inverse(x, 1.0, 20.0)
        assert np.isnan(inv[0]) and inv[1] == np.inf and np.isnan(inv[2:]).all()


# --- run(): accuracy and layouts ---------------------------------------------------------------

# beta < 1 is left out: beta*y underflowing for subnormal y is another kernel corner.
@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, 1.0), (4.0, math.inf)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("func", FUNCS)
def test_run_matches_reference(func, dtype, beta, threshold):
    rng = np.random.default_rng(1)
    x = arrays.values(dtype, BIG, rng)
    # grad_output of moderate size (plus NaN and zeros): the extremes of g*grad (inf*0, a huge g
    # times an underflowing derivative) are the kernels' corners, test_accuracy's business.
    g = rng.uniform(-4, 4, BIG).astype(dtype)
    g[:3] = [np.nan, 0.0, -0.0]
    ins = inputs(func, x, g)
    expected = _reference.evaluate(func, *ins, beta=beta, threshold=threshold)
    # g * grad rounds once more after grad: up to ~1.5 ULP (2 units for subnormal results)
    allowed = 2.0 if func == "softplus_backward" else 1.0
    for nthreads in (1, 2):
        got = call(func, ins, beta, threshold, nthreads)
        arrays.assert_ulp(got, expected, allowed, inputs={"x": x},
                          what=f"{func} {np.dtype(dtype)} beta={beta} thr={threshold} n={nthreads}")
    # the ufunc path agrees bit for bit with the blocked kernels
    with np.errstate(all="ignore"):  # beta*x overflowing to inf sets the flag (result exact)
        got_uf = getattr(nb, func)(*ins, dtype(beta), dtype(threshold))
    np.testing.assert_array_equal(got_uf, got)


def test_run_specials_exact():
    for dt in DTYPES:
        x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1.0], dt)
        sp = call("softplus", (x,), beta=4.0)
        assert np.isnan(sp[0]) and sp[1] == np.inf and sp[2] == 0 and sp[3] == dt(math.log(2) / 4)
        gr = call("softplus_grad", (x,))
        assert np.isnan(gr[0]) and gr[1] == 1 and gr[2] == 0
        inv = call("softplus_inverse", (x,))
        assert np.isnan(inv[0]) and inv[1] == np.inf and np.isnan(inv[2:]).all()


def _layout_cases():
    for c in arrays.cases(dtypes=(np.float32, np.float64)):
        if c.array.dtype.isnative:  # byte-swapped arrays never reach run()
            yield c


@pytest.mark.parametrize("case", list(_layout_cases()), ids=lambda c: c.name)
@pytest.mark.parametrize("func", FUNCS)
def test_run_layouts_bit_identical(func, case):
    """Every layout gives the bits of the contiguous computation (which the test above checks)."""
    x = case.array
    ins = inputs(func, x)
    dense = tuple(np.ascontiguousarray(a) for a in ins)
    expected = call(func, dense, 2.0, 1.0)
    for nthreads in (1, 2):
        got = call(func, ins, 2.0, 1.0, nthreads)
        np.testing.assert_array_equal(got, expected, err_msg=f"{case.name} n={nthreads}")
        # a non-contiguous output
        out = np.empty(expected.shape + (2,), x.dtype)[..., 0]
        got = call(func, ins, 2.0, 1.0, nthreads, out=out)
        np.testing.assert_array_equal(got, expected, err_msg=f"{case.name} strided out")


def _big_layouts(dtype):
    """(name, x) pairs of several blocks in the layouts run() treats differently."""
    rng = np.random.default_rng(2)
    base = arrays.values(dtype, 2 * BIG, rng)
    rows = BIG // 7
    yield "C", base[:BIG].copy()
    yield "F-2d", np.asfortranarray(base[: rows * 7].reshape(rows, 7))
    yield "strided", base[: 2 * BIG : 2]
    yield "negative", base[BIG:][::-1]
    yield "broadcast", np.broadcast_to(base[:1000], (BIG // 1000 + 1, 1000))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("func", FUNCS)
def test_run_large_layouts(func, dtype):
    """Several blocks (parallel paths): every layout gives the serial contiguous bits."""
    for name, x in _big_layouts(dtype):
        ins = inputs(func, x)
        dense = tuple(np.ascontiguousarray(a) for a in ins)
        np.testing.assert_array_equal(call(func, ins, 2.0, 20.0, 2), call(func, dense, 2.0, 20.0, 1),
                                      err_msg=name)
    if func == "softplus_backward":  # a broadcast scalar grad_output
        x = arrays.values(dtype, BIG, rng=np.random.default_rng(5))
        g = np.full((1,), 0.75, dtype)
        np.testing.assert_array_equal(call(func, (g, x), nthreads=2),
                                      call(func, (np.full_like(x, 0.75), x)))


@pytest.mark.parametrize("beta", [1.0, 2.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("func", FUNCS)
def test_run_in_place_and_overlap(func, dtype, beta):
    """out is an input (in place: the loops read each block from a copy) or overlaps one
    (run() copies that input first): the same bits as with a separate out."""
    x = arrays.values(dtype, BIG + 1, np.random.default_rng(6))
    for nthreads in (1, 2):
        ref = inputs(func, x[1:].copy())
        want = call(func, ref, beta, nthreads=1)
        for which in range(len(ref)):  # in place: out is each input in turn
            ins = tuple(a.copy() for a in ref)
            nb.run(func, ins, ins[which], beta, 20.0, nthreads)
            np.testing.assert_array_equal(ins[which], want, err_msg=f"in place on input {which}")
        # partial overlap: out is x shifted by one element; NumPy semantics (as if x were copied)
        buf = x.copy()
        ins = inputs(func, buf[1:], np.flip(x[1:]).copy())
        nb.run(func, ins, buf[:-1], beta, 20.0, nthreads)
        np.testing.assert_array_equal(buf[:-1], want, err_msg="overlap")


def test_run_no_floating_point_warnings():
    for dt in DTYPES:
        x = arrays.specials(dt)
        for func in FUNCS:
            ins = inputs(func, x)
            with np.errstate(all="raise"):
                call(func, ins, 3.0, 20.0)
                call(func, ins, 0.5, math.inf)
                call(func, tuple(a[::-1] for a in ins), 3.0, 1e300)  # ufunc path; thr -> inf in f32


def test_run_thread_counts():
    x = arrays.values(np.float64, BIG, np.random.default_rng(3))
    expected = call("softplus", (x,))
    numba.set_num_threads(1)
    try:
        for n in (2, 3, 64):  # more than numba's pool is allowed (capped)
            np.testing.assert_array_equal(call("softplus", (x,), nthreads=n), expected)
            np.testing.assert_array_equal(call("softplus", (x[::-1],), nthreads=n), expected[::-1])
        assert numba.get_num_threads() == 1  # run() restores this thread's setting
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_run_rejects_unknown_func():
    with pytest.raises(ValueError, match="unknown func"):
        nb.run("relu", (np.ones(3),), np.empty(3), 1.0, 20.0, 1)


def test_info():
    d = nb.info()
    assert {"threading", "num_threads", "cache"} <= set(d)
    assert all(isinstance(v, str) for v in d.values())
    assert int(d["num_threads"]) == numba.config.NUMBA_NUM_THREADS


# --- Threads and fork ----------------------------------------------------------------------------

def _storm_jobs():
    rng = np.random.default_rng(4)
    jobs = []
    for i in range(16):
        func = FUNCS[i % 4]
        dt = DTYPES[(i // 4) % 2]
        x = arrays.values(dt, BIG, rng)
        if i // 8:  # half of them strided: the parallel-ufunc path
            x = np.repeat(x, 2)[::2]
        ins = inputs(func, x)
        jobs.append((func, ins, call(func, tuple(np.ascontiguousarray(a) for a in ins))))
    return jobs


def test_sixteen_threads_at_once_bit_identical():
    jobs = _storm_jobs()
    barrier = threading.Barrier(len(jobs))
    errors = []

    def work(func, ins, expected):
        try:
            barrier.wait(timeout=60)
            for _ in range(3):
                got = call(func, ins, nthreads=2)
                if not np.array_equal(got, expected, equal_nan=True):
                    errors.append(f"{func} {ins[-1].dtype}: results differ")
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


def _child(conn):
    try:
        x = np.linspace(-40, 40, BIG)
        a = call("softplus", (x,), nthreads=2)                 # blocked parallel kernel
        b = call("softplus_grad", (x[::-1],), nthreads=2)     # parallel ufunc
        conn.send((hashlib.sha256(a.tobytes()).hexdigest(), hashlib.sha256(b.tobytes()).hexdigest()))
    finally:
        conn.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forked_child_after_parallel_use():
    x = np.linspace(-40, 40, BIG)
    a = call("softplus", (x,), nthreads=2)  # the parent's pool is running now
    b = call("softplus_grad", (x[::-1],), nthreads=2)
    ctx = multiprocessing.get_context("fork")
    for _ in range(2):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(child,))
        p.start()
        child.close()
        ok = parent.poll(60)
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            pytest.fail("the forked child hung")
        assert p.exitcode == 0, f"the forked child died (exit code {p.exitcode})"
        assert ok, "the forked child sent nothing"
        got_a, got_b = parent.recv()
        assert got_a == hashlib.sha256(a.tobytes()).hexdigest()
        assert got_b == hashlib.sha256(b.tobytes()).hexdigest()
    np.testing.assert_array_equal(call("softplus", (x,), nthreads=2), a)  # the parent still works


# --- Import cost and threading layer (fresh interpreters) -----------------------------------------

def test_import_is_cheap_and_starts_nothing():
    proc = run_python("""
        import json, os, sys, threading, time
        import numpy
        def os_threads():
            return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1
        before = os_threads()
        t0 = time.perf_counter()
        import fastsoftplus._numba as m
        dt = time.perf_counter() - t0
        from numba.np.ufunc import parallel
        info = m.info()  # reports the planned layer without starting the pool
        print(json.dumps({
            "info_threads": [os_threads(), threading.active_count(), bool(parallel._is_initialized)],
            "seconds": dt, "os_threads": [before, os_threads()], "py_threads": threading.active_count(),
            "pool": bool(parallel._is_initialized), "kernels": len(m._kernels), "ufuncs": len(m._ufuncs),
            "attrs": [n for n in m.FUNCS + ("UFUNCS",) if n in vars(m)], "cache": m._cache_dir,
            "layer": m._layer}))
    """)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    # numba's own import is ~0.2-0.3 s here; a compile would be seconds
    assert r["seconds"] < 1.0, r
    assert r["os_threads"][0] == r["os_threads"][1] and r["py_threads"] == 1, r
    assert r["info_threads"] == [r["os_threads"][0], 1, False], r
    assert r == {**r, "pool": False, "kernels": 0, "ufuncs": 0, "attrs": [], "cache": None,
                 "layer": None}, r


_LAYER_SCRIPT = """
    import json, os, threading, numpy as np
    import numba, fastsoftplus._numba as m
    BIG = 6 * m.BLOCK_SIZE + 123
    x = np.linspace(-40, 40, BIG)
    want = {}
    for f in m.FUNCS:
        want[f] = np.empty_like(x); m.run(f, (x, x) if f.endswith("backward") else (x,), want[f], 1.0, 20.0, 1)
    bad = []
    def work(i):
        f = m.FUNCS[i % 4]
        v = x if i % 2 else np.repeat(x, 2)[::2]
        out = np.empty_like(x)
        for _ in range(3):
            m.run(f, (v, v) if f.endswith("backward") else (v,), out, 1.0, 20.0, 2)
            if not np.array_equal(out, want[f], equal_nan=True):
                bad.append(f)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in ts]; [t.join() for t in ts]
    child = None
    if os.environ.get("FORK_TEST") and hasattr(os, "fork"):
        import multiprocessing as mp
        ctx = mp.get_context("fork")
        def kid():
            out = np.empty_like(x); m.run("softplus", (x,), out, 1.0, 20.0, 2)
            os._exit(0 if np.array_equal(out, want["softplus"], equal_nan=True) else 3)
        p = ctx.Process(target=kid); p.start(); p.join(60)
        child = p.exitcode
        if p.is_alive():
            p.kill(); child = "hung"
    print(json.dumps({"layer": numba.threading_layer(), "info": m.info()["threading"], "bad": bad,
                      "child": child}))
"""


def test_default_layer_is_tbb_when_available():
    if not nb._tbb_library_candidates() or not nb._preload_tbb():
        pytest.skip("libtbb (PyPI 'tbb') is not installed")
    proc = run_python(_LAYER_SCRIPT, env={"FORK_TEST": "1"})
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.splitlines()[-1])
    assert r == {"layer": "tbb", "info": "tbb", "bad": [], "child": 0}, r


def test_user_set_threading_layer_is_honoured():
    """NUMBA_THREADING_LAYER=workqueue stays workqueue; parallel calls from 8 threads are then
    serialized (unserialized, workqueue aborts the process) and a forked child still works."""
    proc = run_python(_LAYER_SCRIPT, env={"NUMBA_THREADING_LAYER": "workqueue", "FORK_TEST": "1"})
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.splitlines()[-1])
    assert r == {"layer": "workqueue", "info": "workqueue", "bad": [], "child": 0}, r


# --- Disk cache ---------------------------------------------------------------------------------

_CACHE_SCRIPT = """
    import hashlib, json, numpy as np
    import fastsoftplus._numba as m
    x = np.linspace(-40, 40, 5000)
    a = np.empty_like(x); m.run("softplus", (x,), a, 1.0, 20.0, 1)            # serial kernel
    b = np.empty_like(x); m.run("softplus_grad", (x[::-1],), b, 1.0, 20.0, 1)  # ufunc, 2 loops
    print(json.dumps({"a": hashlib.sha256(a.tobytes()).hexdigest(),
                      "b": hashlib.sha256(b.tobytes()).hexdigest(), "cache": m.info()["cache"]}))
"""


@pytest.mark.slow
def test_two_processes_compile_into_one_fresh_cache(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    full_env = {**os.environ, **env,
                "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    full_env.pop("NUMBA_DEBUG_CACHE", None)
    cmd = [sys.executable, "-c", textwrap.dedent(_CACHE_SCRIPT)]
    procs = [subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    x = np.linspace(-40, 40, 5000)
    want = {"a": hashlib.sha256(call("softplus", (x,)).tobytes()).hexdigest(),
            "b": hashlib.sha256(call("softplus_grad", (x[::-1],)).tobytes()).hexdigest()}
    for out, _ in outs:
        r = json.loads(out.splitlines()[-1])
        assert {"a": r["a"], "b": r["b"]} == want
        assert r["cache"].startswith(str(tmp_path))
    # a third process loads everything from the cache and compiles nothing
    proc = run_python(_CACHE_SCRIPT, env={**env, "NUMBA_DEBUG_CACHE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "data loaded" in proc.stdout and "data saved" not in proc.stdout, proc.stdout[-2000:]
    r = json.loads(proc.stdout.splitlines()[-1])
    assert {"a": r["a"], "b": r["b"]} == want


def test_cache_tracks_the_kernel_sources(tmp_path, monkeypatch):
    """The cache stamp of this module's functions includes the hash of _nbkernels/_constants,
    so editing a kernel invalidates compiled code numba would otherwise consider fresh."""
    call("softplus", (np.ones(3),))  # the locator is installed at first compile
    if not nb.info()["cache"].startswith(os.sep):
        pytest.skip(f"caching is off here: {nb.info()['cache']}")
    from numba.core import caching
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    ours = [c for c in impl._locator_classes if getattr(c, "_fastsoftplus", False)]
    assert len(ours) == 1
    loc = ours[0].from_function(nb._ser_softplus, nb.__file__)
    assert loc.get_source_stamp()[1] == nb._kernel_digest()
    assert ours[0].from_function(test_info, __file__) is None  # other files: numba's own locators
    # the digest follows the sources' contents
    for name in nb._KERNEL_SOURCES:
        (tmp_path / name).write_bytes(open(os.path.join(os.path.dirname(nb.__file__), name), "rb").read())
    monkeypatch.setattr(nb, "_HERE", str(tmp_path))
    same = nb._kernel_digest()
    with open(tmp_path / "_constants.py", "a") as f:
        f.write("\n# edited\n")
    assert nb._kernel_digest() != same
