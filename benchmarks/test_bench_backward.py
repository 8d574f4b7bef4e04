"""Time softplus_backward: every backend, the dispatcher, ReLU and the peers (grid in cases.py)."""
FUNC = "softplus_backward"


def test_backward(run_case, case):
    run_case(case)
