"""benchmarks/floors.py: it runs (small sizes, one round, no timing asserted) and its toy kernel
is the rough softplus its docstring says (relative error <= 1.2e-3), so its time is a fair
budget for a softplus of that shape."""
import numpy as np

import floors


def test_toy_is_a_rough_softplus():
    x = np.linspace(-80, 30, 200001).astype(np.float32)
    y = np.empty_like(x)
    floors._LOOPS["toy"][0](x, y)
    ref = np.logaddexp(0.0, x.astype(np.float64))
    rel = np.abs(y - ref) / ref
    assert rel.max() <= 1.2e-3, f"toy softplus: relative error {rel.max():.2e} at x={x[rel.argmax()]}"


def test_copy_loops_copy():
    x = np.arange(100003, dtype=np.float64)
    for loop in floors._LOOPS["copy"]:  # serial, parallel
        y = np.zeros_like(x)
        loop(x, y)
        assert np.array_equal(x, y)


def test_measure_runs():
    for func, dtype in (("softplus", "float32"), ("softplus_backward", "float32"),
                        ("softplus_grad", "float64")):
        r = floors.measure(func, dtype, 50_000, "all", rounds=1)
        expected = {"copy", "fastsoftplus"} | ({"toy", "toy_min"} if func == "softplus" else set())
        assert set(r) == expected and all(v > 0 for v in r.values()), (func, r)
