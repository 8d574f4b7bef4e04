"""Reliability (issue 7, part 6): interrupting a long ``apply_file``.

API.md: "dst appears under its name only when complete; src is never written". Interrupted by
KeyboardInterrupt (in this process, and by SIGINT in a child), by SIGTERM turned into SystemExit
(a child with a handler), from the command line (SIGINT: exit status 130), the run must leave no
``dst`` (or the old ``dst`` untouched), no temporary file, ``src`` unchanged, and the process
usable: the same call then completes with the right result. A SIGTERM with the default action
kills the process outright: no ``dst`` may appear (only the documented ``.<dst>.<random>.tmp``
may stay behind).

To interrupt mid-run deterministically: small chunks (CHUNK_BYTES) make the run last ~0.5-1 s;
in this process, the progress bar's stream (``progress=True`` draws on ``sys.stderr``) raises
KeyboardInterrupt at its first write (the first redraw comes after ~0.1 s, between chunks); the
child processes are signalled once their temporary file has grown past SIGNAL_AFTER_BYTES.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastsoftplus as fsp

import arrays

apply_file = getattr(fsp, "apply_file", None)
pytestmark = pytest.mark.skipif(apply_file is None,
                                reason="fastsoftplus.apply_file is not there yet (issue 6)")

#: Source elements (float64: 16 MB): big enough that the run outlasts the interrupt.
N = 2_000_000
#: Bytes per chunk: tiny, so that per-chunk work makes the run last ~0.5-1 s on any backend.
CHUNK_BYTES = 4096
#: A child is signalled once its temporary output holds this many bytes (~1/16 of the run).
SIGNAL_AFTER_BYTES = 1 << 20
#: Seconds to wait for a child to start writing, or to exit, before calling it a hang.
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """A 16 MB float64 source in its own directory; (path, sha256 of its bytes)."""
    path = tmp_path_factory.mktemp("src") / "x.npy"
    np.save(path, np.linspace(-40.0, 40.0, N))
    return str(path), _sha(path)


def _sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class _InterruptingStream:
    """A stderr whose first write raises KeyboardInterrupt (as Ctrl-C would, between chunks)."""

    def __init__(self):
        self.raised = False

    def write(self, text):
        if not self.raised:
            self.raised = True
            raise KeyboardInterrupt
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def _check_usable(src_path, dst, backend=None):
    """The interrupted process still works: the same apply_file completes, correctly."""
    x = np.load(src_path)
    fsp.apply_file(src_path, dst)
    got = np.load(dst)
    np.testing.assert_array_equal(got, fsp.softplus(x, backend=backend))
    arrays.assert_ulp(got, fsp.softplus(x, backend="numpy"), 1, what="after the interruption")


@pytest.mark.parametrize("old_dst", [False, True], ids=["no-dst", "old-dst"])
def test_keyboard_interrupt_in_process(backend, src, tmp_path, monkeypatch, old_dst):
    src_path, src_sha = src
    dst = tmp_path / "y.npy"
    if old_dst:
        np.save(dst, np.arange(5.0))
        old = _sha(dst)
    stream = _InterruptingStream()
    monkeypatch.setattr(sys, "stderr", stream)
    with fsp.use_backend(backend):
        with pytest.raises(KeyboardInterrupt):
            fsp.apply_file(src_path, dst, chunk_bytes=CHUNK_BYTES, progress=True)
    monkeypatch.undo()
    assert stream.raised
    assert _sha(src_path) == src_sha, "src was modified"
    if old_dst:
        assert _sha(dst) == old, "the old dst was changed by an interrupted run"
        os.unlink(dst)
    assert sorted(os.listdir(tmp_path)) == [], "files left behind by the interrupted run"
    with fsp.use_backend(backend):
        _check_usable(src_path, dst, backend)
    assert sorted(os.listdir(tmp_path)) == ["y.npy"]


_CHILD = r"""
import os, signal, sys
import numpy as np
import fastsoftplus as fsp

src, dst, mode = sys.argv[1:4]
if mode == "sigterm-handled":  # a service that turns SIGTERM into a clean exit
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
print("started", flush=True)
try:
    fsp.apply_file(src, dst, chunk_bytes=int(sys.argv[4]))
except KeyboardInterrupt:
    print("interrupted KeyboardInterrupt", flush=True)
except SystemExit as e:
    print(f"interrupted SystemExit {e.code}", flush=True)
else:
    print("completed before the signal", flush=True)
    sys.exit(3)
# still usable
assert not os.path.exists(dst), "dst exists after the interruption"
x = np.load(src)
fsp.apply_file(src, dst)
assert np.array_equal(np.load(dst), fsp.softplus(x)), "the second run is wrong"
print("usable", flush=True)
"""


def _env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOFTPLUS_")
           or k == "FASTSOFTPLUS_DISABLE"}  # (the CI pass without the extension stays so)
    # the reference backend is slow: the run lasts long enough for the signal to land mid-run
    e["FASTSOFTPLUS_BACKEND"] = "numpy"
    e["PYTHONFAULTHANDLER"] = "1"  # a hung child is sent SIGABRT: its threads' stacks go to stderr
    return e


def _size(path) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:  # renamed or removed since it was listed
        return 0


def _run_and_signal(cmd, out_dir, sig) -> subprocess.CompletedProcess:
    """Start ``cmd``, send ``sig`` once a file in ``out_dir`` has SIGNAL_AFTER_BYTES, wait."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            if any(_size(os.path.join(out_dir, f)) >= SIGNAL_AFTER_BYTES
                   for f in os.listdir(out_dir)):
                break
            if p.poll() is not None:
                out, err = p.communicate()
                pytest.fail(f"the child ended before it was signalled (status {p.returncode}):"
                            f"\n{out}\n{err}")
            if time.monotonic() > deadline:
                pytest.fail("the child wrote nothing within the timeout")
            time.sleep(0.002)
        p.send_signal(sig)
        try:
            out, err = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)  # faulthandler prints where it hangs
            try:
                out, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            pytest.fail(f"the child hung after {sig!r} (no exit within {TIMEOUT:.0f} s):\n"
                        f"{out}\n{err}")
    except BaseException:
        if p.poll() is None:
            p.kill()
            p.communicate()
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


@pytest.mark.parametrize("mode,sig,expect", [
    ("sigint", signal.SIGINT, "interrupted KeyboardInterrupt"),
    ("sigterm-handled", signal.SIGTERM, "interrupted SystemExit 143"),
])
def test_signal_interrupts_cleanly(src, tmp_path, mode, sig, expect):
    src_path, src_sha = src
    dst = tmp_path / "y.npy"
    r = _run_and_signal([sys.executable, "-c", _CHILD, src_path, str(dst), mode,
                         str(CHUNK_BYTES)], tmp_path, sig)
    assert r.returncode == 0, f"status {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert expect in r.stdout and "usable" in r.stdout, r.stdout + r.stderr
    assert sorted(os.listdir(tmp_path)) == ["y.npy"], "files left behind by the interrupted run"
    assert _sha(src_path) == src_sha


def test_sigterm_default_action_leaves_no_dst(src, tmp_path):
    """SIGTERM not handled kills the process outright: no partial file under dst's name."""
    src_path, src_sha = src
    dst = tmp_path / "y.npy"
    r = _run_and_signal([sys.executable, "-c", _CHILD, src_path, str(dst), "sigterm",
                         str(CHUNK_BYTES)], tmp_path, signal.SIGTERM)
    assert r.returncode == -signal.SIGTERM, f"status {r.returncode}\n{r.stdout}\n{r.stderr}"
    left = os.listdir(tmp_path)
    assert "y.npy" not in left, "a partial dst appeared"
    # the documented leftover of a killed process: the temporary file, never anything else
    assert all(re.fullmatch(r"\.y\.npy\..+\.tmp", f) for f in left), left
    assert _sha(src_path) == src_sha


def test_cli_sigint_exit_status_and_no_files(src, tmp_path):
    src_path, src_sha = src
    dst = tmp_path / "y.npy"
    r = _run_and_signal([sys.executable, "-m", "fastsoftplus", "apply", src_path, str(dst),
                         "--chunk-bytes", str(CHUNK_BYTES)], tmp_path, signal.SIGINT)
    assert r.returncode == 130, f"status {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "interrupted" in r.stderr
    assert os.listdir(tmp_path) == [], "files left behind by the interrupted command"
    assert _sha(src_path) == src_sha
