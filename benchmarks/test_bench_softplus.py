"""Time softplus: every backend, the dispatcher, ReLU and the peers (grid in cases.py)."""
FUNC = "softplus"


def test_softplus(run_case, case):
    run_case(case)
