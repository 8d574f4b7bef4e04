"""``python -m fastsoftplus bench``: runs, writes --json, and --plot fails clearly without
matplotlib. Tiny sizes: part of the CI smoke run (no timing asserted)."""
import json
import os
import subprocess
import sys

import pytest

ENV = dict(os.environ, PYTHONWARNINGS="error::RuntimeWarning")


def _run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "fastsoftplus", "bench", *args],
                          capture_output=True, text=True, timeout=120, env=ENV, **kw)


def test_bench_json(tmp_path):
    out = tmp_path / "b.json"
    r = _run("--quick", "--sizes", "1e3,2e4", "--dtypes", "float32", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "auto" in r.stdout and "ReLU" in r.stdout
    assert r.stderr == ""  # the progress line goes to stderr only on a terminal
    d = json.loads(out.read_text())
    impls = {row["impl"] for row in d["rows"]}
    assert {"relu", "copyto", "auto"} <= impls
    assert all(row["ratio"] > 0 for row in d["rows"])
    assert d["meta"]["machine"] and d["meta"]["numpy"]


def test_bench_plot_without_matplotlib(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; "
            "from fastsoftplus.__main__ import main; "
            f"sys.exit(main(['bench', '--quick', '--plot', {str(tmp_path / 'p.png')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "--plot needs matplotlib" in r.stderr
    assert not (tmp_path / "p.png").exists()


def test_bench_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the bench extra)")
    png = tmp_path / "p.png"
    r = _run("--quick", "--sizes", "1e3", "--dtypes", "float64", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_bad_arguments():
    r = _run("--backends", "nope")
    assert r.returncode == 2 and "nope" in r.stderr
    r = _run("--dtypes", "float16")
    assert r.returncode == 2 and "float16" in r.stderr
