"""pytest-benchmark configuration: the grid options and the one timing routine every case uses.

    python -m pytest benchmarks                          # default grid (sizes 1e3, 1e5, 1e7)
    python -m pytest benchmarks --bench-full             # sizes 1e3..3e7, strided everywhere
    python -m pytest benchmarks --bench-crossover -k threads   # serial vs threads, 4096..1M
    python -m pytest benchmarks --benchmark-disable -q   # smoke: each case once, untimed, n <= 1e5
    python -m pytest benchmarks --benchmark-json=out.json && python benchmarks/report.py out.json

``FSP_BENCH_FULL=1`` / ``FSP_BENCH_CROSSOVER=1`` do the same as the options. ``--bench-budget``
sets the seconds spent per case (default 0.15; rounds are derived from it, at least 5).

How a case is timed: after a warm-up call (numba compiles there), ``benchmark.pedantic`` times
single calls of the implementation, and its ``setup`` times one ``np.maximum(x, 0, out=y)`` call
right before each of them, on the same arrays. ``extra_info["ratio_to_relu"]`` is the median of
the implementation's times over the median of those ReLU times: both are measured interleaved, in
the same process, so machine load affects both (the measure of ``shared/tools/goals.py``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import pytest

import cases


def pytest_addoption(parser):
    g = parser.getgroup("fastsoftplus benchmarks")
    g.addoption("--bench-full", action="store_true", default=False,
                help="the full grid: sizes 1e3..3e7, strided at every size (env FSP_BENCH_FULL=1)")
    g.addoption("--bench-crossover", action="store_true", default=False,
                help="also the serial-vs-threads grid of test_bench_threads.py "
                     "(env FSP_BENCH_CROSSOVER=1)")
    g.addoption("--bench-budget", type=float, default=None,
                help="seconds of timing per case (default 0.15, env FSP_BENCH_BUDGET)")


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def pytest_sessionstart(session):
    session.config._fsp_load_start = _loadavg()


def pytest_benchmark_update_machine_info(config, machine_info):
    """What the report writes under its tables: versions, backends, load, the command."""
    import platform
    import fastsoftplus as fsp
    from fastsoftplus import _dispatch, _threads
    details = {}
    for name in fsp.available_backends():
        try:
            details[name] = _dispatch.backend_module(name).info()
        except Exception as e:  # info() must not break the run
            details[name] = {"error": repr(e)}
    try:
        from fastsoftplus._bench import _machine
        cpu = _machine()
    except Exception:
        cpu = platform.processor()
    machine_info["fastsoftplus"] = {
        "cpu": cpu,
        "versions": cases.versions(),
        "backends": details,
        "usable_cores": _threads.usable_cores(),
        "load_start": getattr(config, "_fsp_load_start", None),
        "load_end": _loadavg(),
        "command": "python -m pytest " + " ".join(sys.argv[1:]),
        "full": _full(config),
        "budget": config.getoption("--bench-budget") or float(
            os.environ.get("FSP_BENCH_BUDGET", "0.15")),
    }


def _full(config) -> bool:
    return config.getoption("--bench-full") or cases.env_flag("FSP_BENCH_FULL")


def _crossover(config) -> bool:
    return config.getoption("--bench-crossover") or cases.env_flag("FSP_BENCH_CROSSOVER")


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    func = getattr(metafunc.module, "FUNC", None)
    crossover = getattr(metafunc.module, "CROSSOVER", False)
    if crossover and not _crossover(metafunc.config):
        grid = []
    else:
        grid = cases.grid(func, full=_full(metafunc.config), crossover=crossover,
                          smoke=bool(metafunc.config.getoption("benchmark_disable", False)))
    if not grid:
        metafunc.parametrize("case", [pytest.param(None, marks=pytest.mark.skip(
            reason="the crossover grid runs with --bench-crossover"))], ids=["off"])
        return
    metafunc.parametrize("case", grid, ids=[f"{c.func}-{c.id}" if crossover else c.id
                                            for c in grid])


@pytest.fixture(scope="session")
def budget(pytestconfig) -> float:
    b = pytestconfig.getoption("--bench-budget")
    if b is None:
        b = float(os.environ.get("FSP_BENCH_BUDGET", "0.15"))
    return b


@pytest.fixture(scope="session", autouse=True)
def _restore_threads():
    """Leave the thread settings as they were (cases change them)."""
    import fastsoftplus as fsp
    before = fsp.get_num_threads()
    yield
    fsp.set_num_threads(before)


@pytest.fixture
def run_case(benchmark, budget):
    """``run_case(case, fn=None, prepare=None)``: time ``case`` (or `fn`, a zero-argument
    callable) with its ReLU reference interleaved; record the ratio and the case in
    ``benchmark.extra_info``. `prepare`, if given, runs untimed before each call (to restore an
    input that the call overwrites)."""

    def run(case: cases.Case, fn=None, prepare=None):
        args, y = cases.inputs(case.func, case.dtype, case.n, case.layout)
        fn = fn or cases.make(case, args, y)
        x = args[-1]
        benchmark.group = case.group
        info = benchmark.extra_info
        info.update(func=case.func, dtype=case.dtype, n=case.n, layout=case.layout,
                    threads=case.threads, impl=case.impl)
        if case.impl == "auto":
            from fastsoftplus import _dispatch
            c = _dispatch.choose(case.func, np.dtype(case.dtype), case.n,
                                 case.layout == "contig", None)
            info.update(backend=c.name, backend_threads=c.nthreads)

        if benchmark.disabled:  # smoke mode: benchmark() calls fn once, untimed
            benchmark(fn)
            return
        fn()  # warm-up: compiles numba kernels, jits jax, faults the pages of y in
        relu_times: list[float] = []

        def relu_timed():
            if prepare is not None:
                prepare()
            t = time.perf_counter()
            np.maximum(x, 0, out=y)
            relu_times.append(time.perf_counter() - t)

        t = time.perf_counter()
        relu_timed()
        fn()
        once = time.perf_counter() - t
        rounds = int(min(5000, max(5, budget / max(once, 1e-7))))
        relu_times.clear()
        benchmark.pedantic(fn, setup=relu_timed, rounds=rounds, warmup_rounds=1)
        relu = statistics.median(relu_times[1:])  # [0] ran before the warm-up round
        med = benchmark.stats.stats.median
        info.update(ratio_to_relu=med / relu, relu_median_s=relu, median_s=med,
                    elements_per_s=case.n / med, relu_elements_per_s=case.n / relu,
                    rounds=rounds)

    return run
