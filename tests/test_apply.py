"""apply_file and ``python -m fastsoftplus apply``: results, layouts, atomic output, clear errors.

Every file here is small (chunks of a few hundred bytes make many chunks); the 2 GB peak-memory
measurement lives outside the suite (its figure is in _apply.DEFAULT_CHUNK_BYTES's comment).
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import numpy.lib.format as npformat
import pytest

import fastsoftplus as fsp
from fastsoftplus import _apply
from fastsoftplus.__main__ import main

import arrays

FUNCS = ("softplus", "softplus_grad", "softplus_inverse")
# Small chunks, so that even the small test files are cut into many pieces (and a last partial one).
SMALL_CHUNK = 256


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _header(path):
    with open(path, "rb") as f:
        version = npformat.read_magic(f)
        read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        return read(f)


def _expected(func, a, beta=1.0, threshold=20.0):
    """func over the elements in storage order (what apply_file computes), in the array's shape."""
    flat = np.ravel(a, order="F" if np.isfortran(a) else "C")
    r = getattr(fsp, func)(np.ascontiguousarray(flat), beta, threshold)
    return r.reshape(a.shape, order="F" if np.isfortran(a) else "C")


@pytest.fixture
def src(tmp_path):
    """A float64 .npy of 1000 values with all the specials, and its digest."""
    a = arrays.values(np.float64, 1000, np.random.default_rng(1))
    p = tmp_path / "x.npy"
    np.save(p, a)
    return p


def _listing(directory) -> set[str]:
    return set(os.listdir(directory))


# --- results ---------------------------------------------------------------------------------

DTYPES = ["float16", "float32", "float64", ">f4", ">f8", "<f2", "int8", "uint8", "int64", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("func", FUNCS)
def test_values_and_dtype(tmp_path, dtype, func):
    dt = np.dtype(dtype)
    rng = np.random.default_rng(0)
    if dt.kind == "f":
        a = arrays.values(dt.newbyteorder("="), 999, rng).astype(dt)
    elif dt.kind == "b":
        a = rng.integers(0, 2, 999).astype(bool)
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, 999, dtype=dt, endpoint=True)
    np.save(tmp_path / "x.npy", a)
    fsp.apply_file(tmp_path / "x.npy", tmp_path / "y.npy", func, chunk_bytes=SMALL_CHUNK)
    y = np.load(tmp_path / "y.npy")
    expected = _expected(func, a)
    assert y.dtype == expected.dtype and y.dtype.isnative
    np.testing.assert_array_equal(y, expected)
    assert _listing(tmp_path) == {"x.npy", "y.npy"}


@pytest.mark.parametrize("shape", [(), (0,), (1,), (3, 0, 2), (5, 7, 11), (1000,)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_shapes_and_order(tmp_path, shape, order):
    a = np.asarray(arrays.values(np.float32, max(math.prod(shape), 1), np.random.default_rng(2))
                   [:math.prod(shape)].reshape(shape), order=order)
    a = np.asfortranarray(a) if order == "F" else a
    np.save(tmp_path / "x.npy", a)
    fsp.apply_file(tmp_path / "x.npy", tmp_path / "y.npy", chunk_bytes=SMALL_CHUNK)
    y_shape, y_fortran, y_dtype = _header(tmp_path / "y.npy")
    x_shape, x_fortran, _ = _header(tmp_path / "x.npy")
    assert (y_shape, y_fortran, y_dtype) == (x_shape, x_fortran, np.dtype(np.float32))
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, _expected("softplus", a))


@pytest.mark.parametrize("beta,threshold", [(2.0, 5.0), (0.5, None), (3, -1.0), (1.0, math.inf)])
def test_parameters(tmp_path, src, beta, threshold):
    a = np.load(src)
    for func in FUNCS:
        fsp.apply_file(src, tmp_path / "y.npy", func, beta, threshold, chunk_bytes=SMALL_CHUNK)
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy"),
                                      getattr(fsp, func)(a, beta, threshold))


def test_chunks_large_enough_for_threads(tmp_path):
    """Chunks above the parallel threshold run on the library's threads; result unchanged."""
    n = 3 * fsp._dispatch.PARALLEL_MIN_SIZE + 123
    a = np.random.default_rng(3).uniform(-30, 30, n)
    np.save(tmp_path / "x.npy", a)
    fsp.set_num_threads(2)
    fsp.apply_file(tmp_path / "x.npy", tmp_path / "y.npy",
                   chunk_bytes=fsp._dispatch.PARALLEL_MIN_SIZE * 8)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), fsp.softplus(a))


def test_default_chunk_and_version_2_header(tmp_path):
    a = np.arange(-50, 50, dtype=np.float32)
    with open(tmp_path / "x.npy", "wb") as f:
        npformat.write_array(f, a, version=(2, 0))
    fsp.apply_file(str(tmp_path / "x.npy"), str(tmp_path / "y.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), fsp.softplus(a))


def test_replaces_existing_dst_and_keeps_umask_mode(tmp_path, src):
    np.save(tmp_path / "y.npy", np.zeros(3))
    fsp.apply_file(src, tmp_path / "y.npy", chunk_bytes=SMALL_CHUNK)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), fsp.softplus(np.load(src)))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "y.npy").st_mode & 0o777 == 0o666 & ~umask
    assert _listing(tmp_path) == {"x.npy", "y.npy"}


def test_exported():
    assert fsp.apply_file is _apply.apply_file and "apply_file" in fsp.__all__


# --- bad input: a clear error, and nothing written --------------------------------------------

def _make_bad(tmp_path, kind):
    p = tmp_path / "bad.npy"
    if kind == "text":
        p.write_text("1.0 2.0 3.0\n")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "npz":
        p = tmp_path / "bad.npz"
        np.savez(p, a=np.ones(3))
    elif kind == "complex":
        np.save(p, np.ones(4, np.complex128))
    elif kind == "object":
        np.save(p, np.array([1.0, None], dtype=object), allow_pickle=True)
    elif kind == "structured":
        np.save(p, np.zeros(3, dtype=[("a", "f8"), ("b", "i4")]))
    elif kind == "str":
        np.save(p, np.array(["a", "b"]))
    elif kind == "datetime":
        np.save(p, np.array(["2020-01-01"], dtype="datetime64[D]"))
    elif kind == "longdouble":
        if np.dtype(np.longdouble).itemsize <= 8:
            pytest.skip("long double is double on this platform")
        np.save(p, np.ones(3, np.longdouble))
    elif kind == "truncated":
        np.save(p, np.ones(100))
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) - 8)
    elif kind == "bad header":
        p.write_bytes(npformat.magic(1, 0) + b"\x10\x00{'descr': <f8}  \n")
    elif kind == "directory":
        p = tmp_path / "somedir.npy"
        p.mkdir()
    return p


BAD = {"text": ValueError, "empty": ValueError, "npz": ValueError, "complex": TypeError,
       "object": TypeError, "structured": TypeError, "str": TypeError, "datetime": TypeError,
       "longdouble": TypeError, "truncated": ValueError, "bad header": ValueError,
       "directory": IsADirectoryError}
MESSAGES = {"text": "not a .npy file", "npz": "not a .npy file", "complex": "complex128",
            "object": "object", "truncated": "truncated", "structured": "apply_file takes"}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_source(tmp_path, kind):
    p = _make_bad(tmp_path, kind)
    before = _listing(tmp_path)
    with pytest.raises(BAD[kind], match=MESSAGES.get(kind)) as info:
        fsp.apply_file(p, tmp_path / "y.npy")
    assert str(p.name) in str(info.value)  # the message names the file
    assert _listing(tmp_path) == before


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fsp.apply_file(tmp_path / "nothing.npy", tmp_path / "y.npy")
    assert _listing(tmp_path) == set()


def test_dst_is_src(tmp_path, src):
    digest = _digest(src)
    with pytest.raises(ValueError, match="same file as src"):
        fsp.apply_file(src, src)
    with pytest.raises(ValueError, match="same file as src"):
        fsp.apply_file(src, str(tmp_path / "." / "x.npy"))
    os.link(src, tmp_path / "hard.npy")
    os.symlink(src, tmp_path / "soft.npy")
    for other in ("hard.npy", "soft.npy"):
        with pytest.raises(ValueError, match="same file as src"):
            fsp.apply_file(src, tmp_path / other)
    assert _digest(src) == digest
    assert _listing(tmp_path) == {"x.npy", "hard.npy", "soft.npy"}


def test_bad_destination(tmp_path, src):
    with pytest.raises(FileNotFoundError, match="directory of dst"):
        fsp.apply_file(src, tmp_path / "missing" / "y.npy")
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        fsp.apply_file(src, tmp_path / "d")
    assert _listing(tmp_path) == {"x.npy", "d"} and not os.listdir(tmp_path / "d")


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"func": "softplus_backward"}, ValueError, "two arrays"),
    ({"func": "relu"}, ValueError, "not one of softplus, softplus_grad, softplus_inverse"),
    ({"func": None}, ValueError, "not one of"),
    ({"beta": 0.0}, ValueError, "beta"),
    ({"beta": math.nan}, ValueError, "beta"),
    ({"beta": True}, TypeError, "beta"),
    ({"beta": "1"}, TypeError, "beta"),
    ({"threshold": math.nan}, ValueError, "threshold"),
    ({"chunk_bytes": 0}, ValueError, "chunk_bytes"),
    ({"chunk_bytes": 1.5}, TypeError, "chunk_bytes"),
    ({"chunk_bytes": True}, TypeError, "chunk_bytes"),
    ({"progress": "yes"}, TypeError, "progress"),
])
def test_bad_arguments(tmp_path, src, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fsp.apply_file(src, tmp_path / "y.npy", **kwargs)
    assert _listing(tmp_path) == {"x.npy"}


def test_float32_beta_range_checked_before_writing(tmp_path):
    np.save(tmp_path / "x.npy", np.ones(10, np.float32))
    with pytest.raises(ValueError, match="float32"):
        fsp.apply_file(tmp_path / "x.npy", tmp_path / "y.npy", beta=1e300)
    assert _listing(tmp_path) == {"x.npy"}


# --- failures mid-run: no dst, no temporary file, src untouched --------------------------------

class _FailOnCall:
    """Stands in for the public function; raises ``exc`` at call number ``at`` (1: the probe)."""

    def __init__(self, func, exc, at):
        self.func, self.exc, self.at, self.calls = func, exc, at, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise self.exc
        return self.func(*args, **kwargs)


@pytest.mark.parametrize("exc", [RuntimeError("injected"), KeyboardInterrupt(), MemoryError()])
@pytest.mark.parametrize("existing_dst", [False, True])
def test_failure_mid_run_leaves_nothing(tmp_path, src, monkeypatch, exc, existing_dst):
    digest = _digest(src)
    if existing_dst:
        np.save(tmp_path / "y.npy", np.arange(3.0))
        old = _digest(tmp_path / "y.npy")
    fail = _FailOnCall(fsp.softplus, exc, at=4)
    monkeypatch.setitem(_apply.UNARY, "softplus", fail)
    with pytest.raises(type(exc)):
        fsp.apply_file(src, tmp_path / "y.npy", chunk_bytes=SMALL_CHUNK)
    assert fail.calls == 4  # the probe and 2 chunks went through: the file was being written
    assert _digest(src) == digest
    if existing_dst:
        assert _listing(tmp_path) == {"x.npy", "y.npy"} and _digest(tmp_path / "y.npy") == old
    else:
        assert _listing(tmp_path) == {"x.npy"}


def test_unwritable_directory(tmp_path, src, monkeypatch):
    real_open = os.open

    def refuse(path, flags, *args):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(_apply.os, "open", refuse)
    with pytest.raises(PermissionError, match="temporary file in the directory of dst"):
        fsp.apply_file(src, tmp_path / "y.npy")
    assert _listing(tmp_path) == {"x.npy"}


def test_write_failure_leaves_nothing(tmp_path, src, monkeypatch):
    """A failing fsync (as on a full disk) after every chunk was written: no dst, no temp file."""
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    monkeypatch.setattr(_apply.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        fsp.apply_file(src, tmp_path / "y.npy", chunk_bytes=SMALL_CHUNK)
    assert _listing(tmp_path) == {"x.npy"}


def test_sigint_in_a_real_process(tmp_path, src):
    """Ctrl-C while the command line runs: exit status 130, no dst, no temporary file."""
    script = textwrap.dedent(f"""
        import sys, time
        import fastsoftplus as fsp
        from fastsoftplus import _apply
        from fastsoftplus.__main__ import main
        calls = 0
        def slow(*args, **kwargs):
            global calls
            calls += 1
            if calls == 3:  # two chunks written: signal the parent, then wait for Ctrl-C
                print("ready", flush=True)
                time.sleep(60)
            return fsp.softplus(*args, **kwargs)
        _apply.UNARY["softplus"] = slow
        sys.exit(main(["apply", {str(src)!r}, {str(tmp_path / 'y.npy')!r},
                       "--chunk-bytes", "{SMALL_CHUNK}"]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert _listing(tmp_path) == {"x.npy"}


# --- progress bar --------------------------------------------------------------------------------

def test_progress_forced_and_off(tmp_path, src, capsys):
    fsp.apply_file(src, tmp_path / "y.npy", chunk_bytes=SMALL_CHUNK, progress=True)
    err = capsys.readouterr().err
    assert "100.0%" in err and "x.npy" in err and err.endswith("\n")
    for progress in (None, False):  # None: stderr is no terminal here
        fsp.apply_file(src, tmp_path / "y.npy", chunk_bytes=SMALL_CHUNK, progress=progress)
        assert capsys.readouterr().err == ""


def test_progress_on_a_terminal(tmp_path, src):
    """progress=None draws the bar when stderr is a terminal (a pseudo-terminal here)."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "fastsoftplus", "apply", str(src), str(tmp_path / "y.npy")],
            stderr=slave, stdout=subprocess.PIPE, timeout=60)
        os.close(slave)
        slave = None
        out = b""
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not data:
                break
            out += data
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    assert proc.returncode == 0
    assert b"100.0%" in out


# --- command line --------------------------------------------------------------------------------

def test_cli_success(tmp_path, src, capsys):
    a = np.load(src)
    assert main(["apply", str(src), str(tmp_path / "y.npy"), "--func", "softplus_inverse",
                 "--beta", "2", "--threshold", "none", "--chunk-bytes", "1k"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"),
                                  fsp.softplus_inverse(a, 2.0, None))
    assert main(["apply", str(src), str(tmp_path / "y.npy"), "--threshold", "-3.5",
                 "--threads", "1", "--no-progress"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), fsp.softplus(a, 1.0, -3.5))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv,message", [
    (["--func", "softplus_backward"], "two arrays"),
    (["--func", "tanh"], "not one of"),
    (["--beta", "0"], "beta must be"),
    (["--beta", "abc"], "not a number"),
    (["--beta", "inf"], "beta must be"),
    (["--threshold", "nan"], "NaN"),
    (["--threshold", "x"], "not a number or 'none'"),
    (["--chunk-bytes", "0"], "at least 1 byte"),
    (["--chunk-bytes", "lots"], "not a size"),
    (["--threads", "0"], ">= 1"),
    (["--frobnicate"], "unrecognized"),
])
def test_cli_bad_arguments(tmp_path, src, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(["apply", str(src), str(tmp_path / "y.npy"), *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert _listing(tmp_path) == {"x.npy"}


def test_cli_missing_positional(capsys):
    with pytest.raises(SystemExit) as info:
        main(["apply", "only-one.npy"])
    assert info.value.code == 2 and "DST" in capsys.readouterr().err


def test_cli_failures_exit_1(tmp_path, src, capsys):
    assert main(["apply", str(tmp_path / "none.npy"), str(tmp_path / "y.npy")]) == 1
    assert "does not exist" in capsys.readouterr().err
    np.save(tmp_path / "c.npy", np.ones(2, np.complex64))
    assert main(["apply", str(tmp_path / "c.npy"), str(tmp_path / "y.npy")]) == 1
    assert "complex64" in capsys.readouterr().err
    assert main(["apply", str(src), str(src)]) == 1
    assert _listing(tmp_path) == {"x.npy", "c.npy"}


def test_cli_as_a_module(tmp_path, src):
    ok = subprocess.run([sys.executable, "-m", "fastsoftplus", "apply", str(src),
                         str(tmp_path / "y.npy"), "--func", "softplus_grad"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""  # no progress bar: stderr is a pipe
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), fsp.softplus_grad(np.load(src)))
    bad = subprocess.run([sys.executable, "-m", "fastsoftplus", "apply", str(tmp_path / "no.npy"),
                          str(tmp_path / "z.npy")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "does not exist" in bad.stderr
