"""Command line: ``python -m fastsoftplus info``, ``bench`` and ``apply``."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys

from . import __version__, _dispatch, _threads
from . import _apply


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def info(file=None) -> None:
    """Print versions, backends (with the reason for each missing one), threads, environment."""
    file = file or sys.stdout
    import numpy as np

    p = lambda *a: print(*a, file=file)  # noqa: E731
    p(f"fastsoftplus {__version__} ({os.path.dirname(os.path.abspath(__file__))})")
    p(f"python {platform.python_version()} ({platform.python_implementation()}) on "
      f"{platform.system()} {platform.machine()}")
    p(f"numpy {np.__version__}, numba {_version('numba')}, Cython (build tool) {_version('Cython')}")
    av = _dispatch.available_backends()
    reasons = _dispatch.unavailable_reasons()
    p("backends (preference order):")
    for name in _dispatch.BACKENDS:
        if name in av:
            try:
                details = _dispatch.backend_module(name).info()
            except Exception as e:  # info() must not break the report
                details = {"info() failed": f"{type(e).__name__}: {e}"}
            text = ", ".join(f"{k}={v}" for k, v in details.items())
            p(f"  {name:7} available    {text}")
        else:
            p(f"  {name:7} unavailable  {reasons.get(name, '?')}")
    for bad in _dispatch.disabled_unknown():
        p(f"  note: {_dispatch.DISABLE_ENV} names {bad!r}, which is no backend")
    try:
        default = _dispatch.get_backend()
    except ValueError as e:
        default = f"invalid: {e}"
    p(f"default backend: {default or 'automatic'}")
    try:
        from ._api import explain
        p(f"a float32 array of 1e6 elements would run on: {explain(np.empty(10**6, np.float32))}")
    except Exception as e:
        p(f"automatic choice unavailable: {type(e).__name__}: {e}")
    try:
        threads = str(_threads.get_num_threads())
    except ValueError as e:
        threads = f"invalid: {e}"
    p(f"threads: {threads} (usable cores: {_threads.usable_cores()})")
    try:
        from . import ufuncs
        p(f"numpy ufuncs from: {ufuncs.backend()}")
    except Exception as e:
        p(f"numpy ufuncs: unavailable ({e})")
    env = {k: v for k, v in os.environ.items() if k.startswith("FASTSOFTPLUS_")}
    p("environment: " + (", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "no FASTSOFTPLUS_* variables"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastsoftplus",
                                     description="fastsoftplus: information and a quick benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, backends (and why any is missing), threads")
    _apply.add_subparser(sub)
    from . import _bench
    _bench.add_arguments(sub.add_parser(
        "bench", help="speed as a ratio to np.maximum(x, 0, out=y), per backend and size"))
    args = parser.parse_args(argv)
    if args.command == "info":
        info()
        return 0
    if args.command == "apply":
        return _apply.cli(args)
    return _bench.main(args, parser)


if __name__ == "__main__":
    sys.exit(main())
