"""Time softplus_inverse: every backend, the dispatcher, ReLU and the peers (grid in cases.py)."""
FUNC = "softplus_inverse"


def test_inverse(run_case, case):
    run_case(case)
