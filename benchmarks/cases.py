"""What the benchmark suite times: the grid of cases, the inputs, and every implementation.

A case is (func, dtype, n, layout, threads, impl). Cases that share everything but ``impl`` form
one pytest-benchmark group, and every case also times ``np.maximum(x, 0, out=y)`` (ReLU),
interleaved with its own calls, so each result carries its ratio to ReLU from the same run.

Implementations:

- ``relu``, ``copyto``: references (ReLU, and ``np.copyto(y, x)``: the memory-traffic floor);
- ``auto``, ``cython``, ``numba``, ``numpy``: fastsoftplus through the public function (the
  dispatcher's choice, or ``backend=``);
- peers, skipped when not installed: ``torch`` (CPU, with ``out=``), ``numexpr``, ``jax`` (jit),
  ``scipy`` (``scipy.special.softplus``/``expit``), ``naive`` (the obvious NumPy expression).

Every implementation writes into the same preallocated ``y`` where its API allows (``jax`` and
``naive`` allocate: that is part of what they cost).
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple

import numpy as np
import pytest

FUNCS = ("softplus", "softplus_grad", "softplus_backward", "softplus_inverse")
BETA, THRESHOLD = 1.0, 20.0

DEFAULT_SIZES = (10**3, 10**5, 10**6, 10**7)
FULL_SIZES = (10**3, 10**4, 10**5, 10**6, 10**7, 3 * 10**7)
#: Default grid: strided layout only at this size (the full grid has it at every size).
DEFAULT_STRIDED_SIZES = (10**5,)
#: With --benchmark-disable (smoke: every case runs once, untimed) sizes stop here.
SMOKE_MAX_N = 10**5
#: The crossover grid (``--bench-crossover``): serial vs all threads around PARALLEL_MIN_N.
CROSSOVER_SIZES = tuple(2**k for k in range(12, 21)) + (2**22, 2**24)  # 4096 .. 16M

FSP_IMPLS = ("auto", "cython", "numba", "numpy")
PEERS = ("torch", "numexpr", "jax", "scipy", "naive")
REFS = ("relu", "copyto")
#: The NumPy reference backend takes ~0.3 s per call at 1e6 float64 (it is the test oracle, not a
#: contender): not timed above this size.
REFERENCE_MAX_N = 10**6
#: Single-threaded whatever the thread setting: timed in the all-threads groups only.
SERIAL_ONLY = ("numpy", "scipy", "naive", "jax", "copyto")
#: Peers that have the function (the others have no counterpart for it).
PEER_FUNCS = {
    "torch": ("softplus", "softplus_grad", "softplus_backward"),
    "numexpr": FUNCS,
    "jax": ("softplus", "softplus_grad", "softplus_backward"),
    "scipy": ("softplus", "softplus_grad"),
    "naive": FUNCS,
}


def all_threads() -> int:
    """The thread count of an "all cores" case: fastsoftplus's default (usable cores)."""
    from fastsoftplus import _threads
    return _threads.usable_cores()


class Case(NamedTuple):
    func: str
    dtype: str
    n: int
    layout: str  #: "contig", or "strided" (x is every 2nd element of a buffer; y is contiguous)
    threads: int
    impl: str

    @property
    def group(self) -> str:
        return f"{self.func} {self.dtype} n={fmt_n(self.n)} {self.layout} threads={self.threads}"

    @property
    def id(self) -> str:
        return f"{self.dtype}-n{fmt_n(self.n)}-{self.layout}-t{self.threads}-{self.impl}"


def fmt_n(n: int) -> str:
    """1000 -> '1e3', 30000000 -> '3e7', 65536 -> '65536'."""
    mant, exp = f"{n:.0e}".split("e")
    return f"{mant}e{int(exp)}" if float(f"{n:.0e}") == n else str(n)


def grid(func: str | None, full: bool = False, crossover: bool = False,
         smoke: bool = False) -> list[Case]:
    """The cases for `func` (every function: None, crossover grid only), ordered so that cases
    sharing an input are adjacent."""
    nall = all_threads()
    cases = []
    if crossover:  # serial vs all threads for each backend through run(): see test_bench_threads
        for fn in (FUNCS if func is None else (func,)):
            for dtype in ("float32", "float64"):
                for n in CROSSOVER_SIZES:
                    for threads in sorted({1, nall}):
                        for impl in ("relu", "cython", "numba"):
                            cases.append(Case(fn, dtype, n, "contig", threads, impl))
        return cases
    sizes = FULL_SIZES if full else DEFAULT_SIZES
    if smoke:  # untimed: each code path once (1e5 is threaded and strided too), little memory
        sizes = tuple(n for n in sizes if n <= SMOKE_MAX_N)
    impls = REFS + FSP_IMPLS + PEERS
    for dtype in ("float32", "float64"):
        for n in sizes:
            layouts = ("contig", "strided") if full or n in DEFAULT_STRIDED_SIZES else ("contig",)
            for layout in layouts:
                for threads in sorted({nall, 1}, reverse=True):
                    for impl in impls:
                        if impl == "copyto" and func != "softplus":
                            continue  # one floor is enough; the plot draws it for every func
                        if impl in PEER_FUNCS and func not in PEER_FUNCS[impl]:
                            continue
                        if threads != nall and impl in SERIAL_ONLY:
                            continue
                        if impl == "numpy" and n > REFERENCE_MAX_N:
                            continue
                        cases.append(Case(func, dtype, n, layout, threads, impl))
    return cases


# --- inputs ----------------------------------------------------------------------------------

_cache: dict[tuple, tuple] = {}


def inputs(func: str, dtype: str, n: int, layout: str) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """``(args, y)``: the inputs of `func` and a contiguous output, cached for the last shape.

    x is ``5 * standard normal`` (as the project's goals script; about 0.01% above the threshold
    20), ``grad_output`` standard normal, and the inverse gets softplus values (all > 0).
    """
    key = (func == "softplus_backward", func == "softplus_inverse", dtype, n, layout)
    if key in _cache:
        return _cache[key]
    _cache.clear()  # keep one input set alive: the 3e7 float64 arrays weigh 240 MB each
    rng = np.random.default_rng(0)
    step = 2 if layout == "strided" else 1

    def draw(scale):
        base = (rng.standard_normal(n * step) * scale).astype(dtype)
        return base[::step]
    x = draw(5.0)
    if func == "softplus_inverse":
        x[...] = np.logaddexp(0.0, x.astype(np.float64)).astype(dtype)
        x[x == 0] = np.finfo(dtype).tiny
    args = (draw(1.0), x) if func == "softplus_backward" else (x,)
    y = np.empty(n, dtype)
    _cache[key] = (args, y)
    return args, y


# --- implementations ---------------------------------------------------------------------------

def _torch(func: str, args, y, threads: int) -> Callable[[], object]:
    torch = pytest.importorskip("torch", reason="torch is not installed")
    torch.set_num_threads(threads)
    ts = [torch.from_numpy(a) for a in args]
    ty = torch.from_numpy(y)
    if func == "softplus":
        return lambda: torch._C._nn.softplus(ts[0], BETA, THRESHOLD, out=ty)
    if func == "softplus_grad":  # torch has no softplus derivative: sigmoid(beta*x), beta = 1
        return lambda: torch.sigmoid(ts[0], out=ty)
    op = torch.ops.aten.softplus_backward.grad_input
    return lambda: op(ts[0], ts[1], BETA, THRESHOLD, grad_input=ty)


_NUMEXPR = {
    "softplus": "where(x > 20, x, log1p(exp(x)))",
    "softplus_grad": "1 / (1 + exp(-x))",
    "softplus_backward": "g / (1 + exp(-x))",
    "softplus_inverse": "where(x > 20, x, log(expm1(x)))",
}


def _numexpr(func: str, args, y, threads: int) -> Callable[[], object]:
    ne = pytest.importorskip("numexpr", reason="numexpr is not installed")
    ne.set_num_threads(threads)
    names = dict(zip(("g", "x"), args)) if len(args) == 2 else {"x": args[0]}
    expr = _NUMEXPR[func]
    ne.evaluate(expr, local_dict=names, out=y)  # checks the expression once
    return lambda: ne.re_evaluate(local_dict=names)


def _jax(func: str, args, y, threads: int) -> Callable[[], object]:
    jax = pytest.importorskip("jax", reason="jax is not installed")
    jnp = jax.numpy
    fns = {
        "softplus": jax.nn.softplus,
        "softplus_grad": jax.nn.sigmoid,
        "softplus_backward": lambda g, x: g * jax.nn.sigmoid(x),
    }
    f = jax.jit(fns[func])
    dev = [jnp.asarray(a) for a in args]  # transfer once: time the computation, not the copy
    return lambda: f(*dev).block_until_ready()


def _scipy(func: str, args, y, threads: int) -> Callable[[], object]:
    special = pytest.importorskip("scipy.special", reason="scipy is not installed")
    if func == "softplus":
        if not hasattr(special, "softplus"):
            pytest.skip("scipy.special.softplus needs scipy >= 1.15")
        return lambda: special.softplus(args[0], out=y)
    return lambda: special.expit(args[0], out=y)


def _naive(func: str, args, y, threads: int) -> Callable[[], object]:
    x = args[-1]
    if func == "softplus":
        return lambda: np.where(x > THRESHOLD, x, np.log1p(np.exp(x)))
    if func == "softplus_grad":
        return lambda: 1 / (1 + np.exp(-x))
    if func == "softplus_backward":
        return lambda: args[0] / (1 + np.exp(-x))
    return lambda: np.where(x > THRESHOLD, x, np.log(np.expm1(x)))


def _fastsoftplus(impl: str, func: str, args, y, threads: int) -> Callable[[], object]:
    import fastsoftplus as fsp
    if impl != "auto" and impl not in fsp.available_backends():
        from fastsoftplus import _dispatch
        pytest.skip(f"backend {impl} unavailable: {_dispatch.unavailable_reasons().get(impl)}")
    fsp.set_num_threads(threads)
    f = getattr(fsp, func)
    kw = {"out": y} if impl == "auto" else {"out": y, "backend": impl}
    return lambda: f(*args, BETA, THRESHOLD, **kw)


def make(case: Case, args, y) -> Callable[[], object]:
    """A zero-argument callable computing ``case`` (skips when the implementation is missing)."""
    if case.impl == "relu":
        x = args[-1]
        return lambda: np.maximum(x, 0, out=y)
    if case.impl == "copyto":
        x = args[-1]
        return lambda: np.copyto(y, x)
    if case.impl in FSP_IMPLS:
        return _fastsoftplus(case.impl, case.func, args, y, case.threads)
    peer = {"torch": _torch, "numexpr": _numexpr, "jax": _jax, "scipy": _scipy,
            "naive": _naive}[case.impl]
    return peer(case.func, args, y, case.threads)


def versions() -> dict[str, str]:
    """Versions of everything timed (for the report's footer)."""
    import importlib.metadata as md
    out = {}
    for dist in ("fastsoftplus", "numpy", "numba", "torch", "numexpr", "jax", "scipy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "no", "false")
