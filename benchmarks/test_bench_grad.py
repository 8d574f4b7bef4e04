"""Time softplus_grad: every backend, the dispatcher, ReLU and the peers (grid in cases.py)."""
FUNC = "softplus_grad"


def test_grad(run_case, case):
    run_case(case)
