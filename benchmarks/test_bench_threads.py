"""Serial vs all threads for each backend, 4096..16M elements: the data behind the dispatcher's
thread crossover (``PARALLEL_MIN_N``). Runs only with ``--bench-crossover``:

    python -m pytest benchmarks/test_bench_threads.py --bench-crossover --benchmark-json=x.json
    python benchmarks/report.py x.json --crossover

Each case calls the backend's ``run()`` directly with ``nthreads`` = 1 or all cores, so the
dispatcher's own rule does not interfere. The Cython loops have their own gate (no OpenMP below
``_ext.PARALLEL_MIN_N`` elements): to see threads below it, build the extension with a smaller
``PARALLEL_MIN_N`` (the case records the gate in ``extra_info["c_gate"]``).
"""
import pytest

import cases

FUNC = None  # every function
CROSSOVER = True


def test_threads(run_case, benchmark, case):
    if case.impl == "relu":
        run_case(case)
        return
    from fastsoftplus import _dispatch
    if case.impl not in _dispatch.available_backends():
        pytest.skip(f"backend {case.impl} unavailable: "
                    f"{_dispatch.unavailable_reasons().get(case.impl)}")
    mod = _dispatch.backend_module(case.impl)
    args, y = cases.inputs(case.func, case.dtype, case.n, case.layout)
    if case.impl == "cython":
        from fastsoftplus._cy import _ext
        benchmark.extra_info["c_gate"] = _ext.PARALLEL_MIN_N
    run_case(case, lambda: mod.run(case.func, args, y, cases.BETA, cases.THRESHOLD, case.threads))
