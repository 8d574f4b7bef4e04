"""Shared fixtures: ``backend`` (every available backend), ULP assertion, isolation of the
process-global settings, hypothesis profiles. The exhaustive float32 sweep runs by default (about
2-4 min on 2 cores); ``-m "not exhaustive"`` leaves it out of a quick local run."""

from __future__ import annotations

import os

import pytest

import fastsoftplus
from fastsoftplus import _dispatch, _threads

import arrays

try:
    from hypothesis import HealthCheck, settings

    # deadline off: the first example may compile a numba kernel. "ci": more examples.
    settings.register_profile("default", deadline=None, max_examples=100,
                              suppress_health_check=[HealthCheck.too_slow])
    # "ci": more examples, derandomized so a CI verdict is reproducible (random runs stay local)
    settings.register_profile("ci", deadline=None, max_examples=400, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:  # test_properties skips itself
    pass

BACKENDS = fastsoftplus.available_backends()


def pytest_report_header(config):
    reasons = _dispatch.unavailable_reasons()
    lines = [f"fastsoftplus {fastsoftplus.__version__}: backends {', '.join(BACKENDS)}"]
    lines += [f"  unavailable {n}: {r}" for n, r in reasons.items()]
    return lines


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each available backend by name."""
    return request.param


@pytest.fixture(autouse=True)
def _isolate_global_settings():
    """Undo set_backend()/set_num_threads() made by a test, whatever its outcome."""
    saved_backend = (_dispatch._global_default, _dispatch._global_source)
    saved_threads = _threads._num_threads  # None: not set, the default applies
    yield
    _dispatch._global_default, _dispatch._global_source = saved_backend
    if _threads._num_threads != saved_threads:
        _threads._num_threads = saved_threads
        try:  # through the public setter, which also reaches the C ufuncs' count
            _threads.set_num_threads(_threads.get_num_threads())
        except ValueError:  # an invalid FASTSOFTPLUS_NUM_THREADS left by the test
            pass
        _threads._num_threads = saved_threads  # "not set" stays not set


@pytest.fixture
def assert_ulp():
    """``arrays.assert_ulp(actual, expected, max_ulp, inputs=..., what=...)``."""
    return arrays.assert_ulp
