"""fastsoftplus inside data pipelines: dask (threaded scheduler and dask.distributed with worker
processes), pandas, xarray, and thread control through threadpoolctl.

Each test needs an optional package and skips, saying which, when it is missing; CI installs them
all (the ``pipelines`` extra). The in-process tests use whatever ufunc backend this process has
(the C extension, or Numba under ``FASTSOFTPLUS_DISABLE=cython``); one subprocess test runs the
dask checks on the Numba ufuncs when this process has the extension.
"""

from __future__ import annotations

import faulthandler
import math
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastsoftplus as fsp
from fastsoftplus import _threads, ufuncs

import arrays

UNARY = ("softplus", "softplus_grad", "softplus_inverse")
# Blocks of this many elements reach the parallel loops, so concurrent dask threads each start
# their own thread teams.
BIG_BLOCK = 2 * fsp._dispatch.PARALLEL_MIN_SIZE
# The distributed cluster must come up, compute and go down within this (a hang guard: after it
# faulthandler dumps every thread's stack and ends the test process instead of hanging CI).
DISTRIBUTED_DEADLINE_S = 240


def _call(func, *args, beta=2.0, threshold=10.0):
    if func == "softplus_backward":
        return fsp.softplus_backward(*args, beta, threshold)
    return getattr(fsp, func)(args[0], beta, threshold)


def _values(n, dtype=np.float64, seed=0):
    return arrays.values(dtype, n, np.random.default_rng(seed))


# --- dask, threaded scheduler -------------------------------------------------------------------

@pytest.fixture(scope="module")
def da():
    return pytest.importorskip("dask.array", reason="dask is not installed (pip install .[pipelines])")


class _CountingSource:
    """A dask array whose blocks are produced by a counted call: shows when work happens."""

    def __init__(self, da, data, chunks):
        self.calls = 0
        self._lock = threading.Lock()
        base = da.from_array(data, chunks=chunks)
        self.array = da.map_blocks(self._block, base, meta=np.empty((0,) * data.ndim, data.dtype))

    def _block(self, b):
        with self._lock:
            self.calls += 1
        return b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("func", UNARY + ("softplus_backward",))
def test_dask_lazy_and_blockwise(da, func, dtype):
    data = _values(6 * 250, dtype).reshape(6, 250)
    src = _CountingSource(da, data, chunks=(2, 100))
    x = src.array
    y = _call(func, x, x) if func == "softplus_backward" else _call(func, x)
    assert isinstance(y, da.Array)
    assert src.calls == 0  # nothing computed yet
    assert y.dtype == dtype and y.chunks == x.chunks
    # one new task per block, nothing else (no rechunking, no concatenation)
    assert len(dict(y.__dask_graph__())) == len(dict(x.__dask_graph__())) + x.npartitions
    got = y.compute(scheduler="threads", num_workers=2)
    assert src.calls >= x.npartitions
    expected = _call(func, data, data) if func == "softplus_backward" else _call(func, data)
    np.testing.assert_array_equal(got, expected)


def test_dask_ufuncs_directly(da):
    data = _values(3000)
    x = da.from_array(data, chunks=700)
    for name in UNARY:
        y = getattr(ufuncs, name)(x, 1.5, math.inf)
        assert isinstance(y, da.Array)
        np.testing.assert_array_equal(y.compute(scheduler="threads"),
                                      getattr(fsp, name)(data, 1.5, None))
    g = da.from_array(_values(3000, seed=1), chunks=300)  # other chunks: dask aligns them
    y = ufuncs.softplus_backward(g, x, 1.0, 20.0)
    np.testing.assert_array_equal(y.compute(scheduler="threads"),
                                  fsp.softplus_backward(g.compute(), data))


def test_dask_broadcasting_dtypes_and_threshold_none(da):
    data = _values(4 * 500, np.float32).reshape(4, 500)
    x = da.from_array(data, chunks=(1, 250))
    g = np.linspace(-2, 2, 500).astype(np.float32)  # a numpy operand broadcast over the rows
    y = fsp.softplus_backward(g, x, threshold=None)
    assert isinstance(y, da.Array) and y.dtype == np.float32
    np.testing.assert_array_equal(y.compute(scheduler="threads"),
                                  fsp.softplus_backward(g, data, threshold=None))
    for dt in (np.int32, np.bool_):
        xi = da.from_array(np.arange(-50, 50).astype(dt), chunks=30)
        y = fsp.softplus(xi)
        assert y.dtype == np.float64  # dask's metadata says what compute() gives
        got = y.compute(scheduler="threads")
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, fsp.softplus(np.arange(-50, 50).astype(dt)))


NUMBA_UFUNCS = ufuncs.backend() == "numba"


@pytest.mark.xfail(NUMBA_UFUNCS, strict=True,
                   reason="the Numba ufuncs have no float16 loop: float16 in, float32 out")
def test_dask_float16_stays_float16(da):
    data = np.arange(-50, 50).astype(np.float16)
    y = fsp.softplus(da.from_array(data, chunks=30))
    assert y.dtype == np.float16
    got = y.compute(scheduler="threads")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, fsp.softplus(data))


@pytest.mark.xfail(NUMBA_UFUNCS, strict=True,
                   reason="the Numba ufuncs let IEEE flags raised inside the kernel (exp "
                          "underflow, beta*x overflow) surface as NumPy RuntimeWarnings")
def test_ufunc_path_gives_no_floating_point_warnings(da):
    """The specials through dask/pandas/xarray give no RuntimeWarning (as the functions)."""
    import warnings
    data = arrays.specials(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for func in UNARY:
            getattr(fsp, func)(da.from_array(data, chunks=16), 4.0, None).compute(
                scheduler="sync")
        fsp.softplus_backward(data[::-1], da.from_array(data, chunks=16)).compute(
            scheduler="sync")


def test_dask_threads_call_at_once(da):
    """Two dask threads in the parallel loops at the same time (each with its thread team)."""
    data = _values(8 * BIG_BLOCK, np.float32)
    x = da.from_array(data, chunks=BIG_BLOCK)
    for func in ("softplus", "softplus_grad"):
        got = getattr(fsp, func)(x).compute(scheduler="threads", num_workers=2)
        np.testing.assert_array_equal(got, getattr(fsp, func)(data))


def test_ufuncs_pickle_by_reference():
    for name in ("softplus", "softplus_grad", "softplus_backward", "softplus_inverse"):
        uf = getattr(ufuncs, name)
        assert isinstance(uf, np.ufunc)
        assert pickle.loads(pickle.dumps(uf)) is uf
        assert len(pickle.dumps(uf)) < 200  # a reference, not compiled code


# --- dask.distributed: worker processes on loopback ---------------------------------------------

@pytest.fixture(scope="class")
def client():
    """A LocalCluster of 2 worker processes (1 thread each) on loopback, for one test class."""
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install .[pipelines])")
    pytest.importorskip("dask.array")
    import dask
    faulthandler.dump_traceback_later(DISTRIBUTED_DEADLINE_S, exit=True)  # start-up guard
    with dask.config.set({"distributed.comm.timeouts.connect": "60s"}):
        cluster = distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
            host="127.0.0.1", silence_logs=40)
    try:
        c = distributed.Client(cluster, timeout="60s")
    except BaseException:
        cluster.close(timeout=30)
        raise
    finally:
        faulthandler.cancel_dump_traceback_later()
    try:
        yield c  # the tests bound their own waits (result(timeout=...))
    finally:
        faulthandler.dump_traceback_later(DISTRIBUTED_DEADLINE_S, exit=True)  # shut-down guard
        try:
            c.close(timeout=30)
            cluster.close(timeout=30)
        finally:
            faulthandler.cancel_dump_traceback_later()


class TestDistributed:
    def test_worker_processes(self, client):
        workers = client.run(os.getpid)
        assert len(workers) == 2 and os.getpid() not in workers.values()
        # the workers serve the same ufunc backend as this process (spawned: same environment)
        assert set(client.run(ufuncs.backend).values()) == {ufuncs.backend()}

    def test_compute(self, client, da):
        data = _values(4 * BIG_BLOCK, np.float32)
        x = da.from_array(data, chunks=BIG_BLOCK // 2)
        lazy = {
            "softplus": fsp.softplus(x, 2.0, 5.0),
            "softplus_grad": fsp.softplus_grad(x, threshold=None),
            "softplus_inverse": ufuncs.softplus_inverse(x, 1.0, 20.0),
            "softplus_backward": fsp.softplus_backward(x[::-1], x),
        }
        futures = client.compute(list(lazy.values()))
        got = dict(zip(lazy, (f.result(timeout=120) for f in futures)))
        np.testing.assert_array_equal(got["softplus"], fsp.softplus(data, 2.0, 5.0))
        np.testing.assert_array_equal(got["softplus_grad"], fsp.softplus_grad(data, threshold=None))
        np.testing.assert_array_equal(got["softplus_inverse"], fsp.softplus_inverse(data))
        np.testing.assert_array_equal(got["softplus_backward"],
                                      fsp.softplus_backward(data[::-1], data))


_NUMBA_SCRIPT = textwrap.dedent("""
    import math, os, sys
    import numpy as np
    import dask.array as da
    import distributed
    import fastsoftplus as fsp
    from fastsoftplus import ufuncs

    def main():
        assert ufuncs.backend() == "numba", ufuncs.backend()
        data = np.random.default_rng(0).uniform(-40, 40, 300_000).astype(np.float32)
        data[:4] = [np.nan, np.inf, -np.inf, -0.0]
        x = da.from_array(data, chunks=75_000)
        lazy = [fsp.softplus(x), fsp.softplus_grad(x, 2.0, None), ufuncs.softplus_inverse(x, 1.0, 20.0),
                fsp.softplus_backward(x, x)]
        expected = [fsp.softplus(data), fsp.softplus_grad(data, 2.0, None), fsp.softplus_inverse(data),
                    fsp.softplus_backward(data, data)]
        for y, e in zip(lazy, expected):
            assert isinstance(y, da.Array)
            np.testing.assert_array_equal(y.compute(scheduler="threads", num_workers=2), e)
        with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                      dashboard_address=None, host="127.0.0.1",
                                      silence_logs=40) as cluster, \\
                distributed.Client(cluster, timeout="60s") as client:
            assert set(client.run(ufuncs.backend).values()) == {"numba"}
            got = [f.result(timeout=120) for f in client.compute(lazy)]
            for g, e in zip(got, expected):
                np.testing.assert_array_equal(g, e)
        print("numba pipelines ok")

    if __name__ == "__main__":
        main()
""")


def test_dask_on_numba_ufuncs(tmp_path):
    """The threaded and distributed checks with FASTSOFTPLUS_DISABLE=cython (Numba ufuncs)."""
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    if ufuncs.backend() == "numba":
        pytest.skip("this process already serves the Numba ufuncs: the in-process tests cover them")
    script = tmp_path / "numba_pipelines.py"  # a file: spawned workers re-import __main__
    script.write_text(_NUMBA_SCRIPT)
    env = dict(os.environ, FASTSOFTPLUS_DISABLE="cython")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=DISTRIBUTED_DEADLINE_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "numba pipelines ok" in proc.stdout


# --- pandas ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pd():
    return pytest.importorskip("pandas", reason="pandas is not installed (pip install .[pipelines])")


@pytest.mark.parametrize("func", UNARY)
def test_pandas_series(pd, func):
    data = _values(60)
    s = pd.Series(data, index=pd.Index([f"r{i}" for i in range(60)], name="row"), name="v")
    r = _call(func, s)
    assert isinstance(r, pd.Series)
    assert r.index.equals(s.index) and r.index.name == "row" and r.name == "v"
    np.testing.assert_array_equal(r.to_numpy(), _call(func, data))
    r = getattr(ufuncs, func)(s, 1.0, math.inf)
    assert isinstance(r, pd.Series) and r.index.equals(s.index)


def test_pandas_dtypes_and_backward(pd):
    idx = pd.date_range("2024-01-01", periods=5, freq="D")
    s32 = pd.Series(np.array([-3, -1, 0, 1, 30], np.float32), index=idx)
    assert fsp.softplus(s32).dtype == np.float32
    si = pd.Series([-3, -1, 0, 1, 30], index=idx)
    r = fsp.softplus(si)
    assert r.dtype == np.float64 and r.index.equals(idx)
    g = pd.Series(np.linspace(-1, 1, 5), index=idx)
    r = fsp.softplus_backward(g, s32.astype(np.float64))
    assert isinstance(r, pd.Series) and r.index.equals(idx)
    np.testing.assert_array_equal(r.to_numpy(), fsp.softplus_backward(g.to_numpy(), si.to_numpy()))


@pytest.mark.parametrize("func", UNARY)
def test_pandas_dataframe(pd, func):
    df = pd.DataFrame({"a": _values(40), "b": _values(40, seed=3),
                       "c": _values(40, np.float32, seed=4)},
                      index=pd.RangeIndex(100, 140, name="k"))
    r = _call(func, df)
    assert isinstance(r, pd.DataFrame)
    assert r.index.equals(df.index) and list(r.columns) == ["a", "b", "c"]
    # pandas computes a ufunc of several inputs (x, beta, threshold) on the frame's common
    # dtype: the float32 column comes back float64 (its values exact in float64)
    assert (r.dtypes == np.float64).all()
    for col in df:
        np.testing.assert_array_equal(r[col].to_numpy(),
                                      _call(func, df[col].to_numpy().astype(np.float64)))


@pytest.mark.parametrize("func", UNARY)
def test_pandas_float32_dataframe_stays_float32(pd, func):
    data = _values(40, np.float32)
    df = pd.DataFrame({"u": data, "v": data[::-1]})
    r = _call(func, df)
    assert isinstance(r, pd.DataFrame) and r.index.equals(df.index)
    assert (r.dtypes == np.float32).all(), r.dtypes
    np.testing.assert_array_equal(r["u"].to_numpy(), _call(func, data))


# --- xarray ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def xr():
    return pytest.importorskip("xarray", reason="xarray is not installed (pip install .[pipelines])")


def _dataarray(xr, dtype=np.float64):
    data = _values(4 * 30, dtype).reshape(4, 30)
    return xr.DataArray(data, dims=("time", "x"), name="t2m",
                        coords={"time": np.arange(4), "x": np.linspace(0, 1, 30),
                                "label": ("time", list("abcd"))})


def _assert_same_frame(r, a):
    assert r.dims == a.dims and r.name == a.name
    assert set(r.coords) == set(a.coords)
    for c in a.coords:
        assert r.coords[c].dims == a.coords[c].dims
        np.testing.assert_array_equal(r.coords[c].values, a.coords[c].values)


@pytest.mark.parametrize("func", UNARY + ("softplus_backward",))
def test_xarray_dataarray(xr, func):
    a = _dataarray(xr)
    r = _call(func, a, a) if func == "softplus_backward" else _call(func, a)
    assert isinstance(r, xr.DataArray)
    _assert_same_frame(r, a)
    expected = _call(func, a.values, a.values) if func == "softplus_backward" else _call(func, a.values)
    np.testing.assert_array_equal(r.values, expected)


def test_xarray_dataset_and_float32(xr):
    a = _dataarray(xr, np.float32)
    ds = xr.Dataset({"t2m": a, "u": a * 0.5})
    r = fsp.softplus(ds)
    assert isinstance(r, xr.Dataset) and set(r.data_vars) == {"t2m", "u"}
    assert r["t2m"].dtype == np.float32
    np.testing.assert_array_equal(r["u"].values, fsp.softplus(a.values * 0.5))


def test_xarray_on_dask_stays_lazy(xr, da):
    a = _dataarray(xr).chunk({"time": 1})
    r = fsp.softplus(a, 2.0, None)
    assert isinstance(r.data, da.Array) and r.chunks == a.chunks
    _assert_same_frame(r, a)
    np.testing.assert_array_equal(r.compute(scheduler="threads").values,
                                  fsp.softplus(a.values, 2.0, None))


# --- thread control: set_num_threads and threadpoolctl --------------------------------------------

@pytest.fixture
def restore_threads():
    saved = fsp.get_num_threads()
    yield saved
    fsp.set_num_threads(saved)


@pytest.fixture(scope="module")
def threadpoolctl():
    return pytest.importorskip("threadpoolctl", minversion="3.0",
                               reason="threadpoolctl >= 3 is not installed (pip install .[pipelines])")


def _ext():
    if "cython" not in fsp.available_backends():
        pytest.skip("the C extension is unavailable here (its thread count is what is checked)")
    from fastsoftplus import _cython
    return _cython._ext


def _our_entry(threadpoolctl):
    mine = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastsoftplus"]
    assert len(mine) == 1, threadpoolctl.threadpool_info()
    return mine[0]


def test_set_num_threads_reaches_the_c_ufuncs(restore_threads):
    ext = _ext()
    x = np.ones(4 * fsp._dispatch.PARALLEL_MIN_SIZE)
    fsp.set_num_threads(1)
    assert ext.get_num_threads() == 1
    ufuncs.softplus(x, 1.0, 20.0)
    assert ext._last_team_size() == 1
    fsp.set_num_threads(2)
    assert ext.get_num_threads() == 2


def test_threadpoolctl_sees_and_limits(threadpoolctl, restore_threads):
    fsp.set_num_threads(3)
    info = _our_entry(threadpoolctl)
    assert info["user_api"] == "fastsoftplus" and info["num_threads"] == 3
    assert info["version"] == fsp.__version__
    assert info["filepath"] == os.path.dirname(fsp.__file__)
    with threadpoolctl.threadpool_limits(1):
        assert fsp.get_num_threads() == 1 and _our_entry(threadpoolctl)["num_threads"] == 1
    assert fsp.get_num_threads() == 3
    with threadpoolctl.threadpool_limits(2, user_api="fastsoftplus"):
        assert fsp.get_num_threads() == 2
    with threadpoolctl.threadpool_limits({"fastsoftplus": 1}):
        assert fsp.get_num_threads() == 1
    assert fsp.get_num_threads() == 3
    assert _threads.register_threadpoolctl()  # registering again is a no-op
    _our_entry(threadpoolctl)


def test_threadpoolctl_limit_reaches_the_loops(threadpoolctl, da, restore_threads):
    """A threadpool_limits block limits the C loops, also under a dask computation; the
    "openmp" limit alone does not (the loops name their team size; documented in _threads)."""
    ext = _ext()
    if not ext.openmp or _threads.usable_cores() < 2:
        pytest.skip("needs OpenMP and 2 usable cores to tell 1 thread from 2")
    fsp.set_num_threads(2)
    data = np.ones(2 * BIG_BLOCK)
    x = da.from_array(data, chunks=BIG_BLOCK)
    with threadpoolctl.threadpool_limits(1):
        np.testing.assert_array_equal(fsp.softplus(x).compute(scheduler="threads"),
                                      fsp.softplus(data))
        assert ext._last_team_size() == 1
    ext._guard_reset()  # (an earlier stall's holdoff would run these on one thread)
    ufuncs.softplus(data, 1.0, 20.0)
    assert ext._last_team_size() == 2
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fsp.get_num_threads() == 2
        ext._guard_reset()
        ufuncs.softplus(data, 1.0, 20.0)
        assert ext._last_team_size() == 2


def test_threadpoolctl_with_invalid_environment(threadpoolctl):
    """An invalid FASTSOFTPLUS_NUM_THREADS shows as None and stays an error after a limit."""
    script = textwrap.dedent("""
        import threadpoolctl, fastsoftplus as fsp
        info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastsoftplus"]
        assert info[0]["num_threads"] is None, info
        with threadpoolctl.threadpool_limits(1):
            assert fsp.get_num_threads() == 1
        try:
            fsp.get_num_threads()
        except ValueError as e:
            print("still invalid:", e)
    """)
    env = dict(os.environ, FASTSOFTPLUS_NUM_THREADS="many")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "still invalid" in proc.stdout
