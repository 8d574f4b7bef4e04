"""``python -m fastsoftplus bench``: speed as a ratio to ``np.maximum(x, 0, out=y)`` (ReLU).

The ratio is median time(f(x, out=y)) / median time(np.maximum(x, 0, out=y)), the two timed
alternately in the same process on the same arrays (so machine load affects both): lower is
better, 1.0 means "as fast as ReLU". ``np.copyto(y, x)`` is timed as well: it only moves the
memory, a floor no elementwise function goes below at large sizes.

This module needs only NumPy (matplotlib for ``--plot``); the thorough suite, with the peers
(torch, numexpr, ...), is ``benchmarks/`` in the source tree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Sequence, TextIO

import numpy as np

from . import _api, _dispatch, _threads

QUICK_SIZES = (1_000, 100_000, 1_000_000)
FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
#: Seconds of timing per (size, implementation); with the sizes above and both dtypes this keeps
#: the default run near a minute and --quick near 10 s on a 2-core machine.
FULL_BUDGET, QUICK_BUDGET = 0.7, 0.18
#: A timing sample repeats the call until it lasts this long (timer resolution, call jitter).
SAMPLE_SECONDS = 2e-4
MIN_SAMPLES = 5
#: An implementation whose calls would take longer than this (extrapolated linearly from the
#: previous size) is not timed at larger sizes: the NumPy reference backend at 1e7 ("-").
MAX_CALL_SECONDS = 0.5


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {_threads.usable_cores()} usable cores, {platform.system()}"


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except (AttributeError, OSError):
        return "load average unknown"


def metadata(command: str | None = None) -> dict:
    """Machine, versions, threads and load: what to write under a table of ratios."""
    import importlib.metadata as md

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None
    from . import __version__
    return {
        "machine": _machine(),
        "python": platform.python_version(),
        "fastsoftplus": __version__,
        "numpy": np.__version__,
        "numba": version("numba"),
        "backends": list(_dispatch.available_backends()),
        "threads": _threads.get_num_threads(),
        "load": _load(),
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def measure(fn: Callable[[], object], base: Callable[[], object], budget: float
            ) -> tuple[float, float]:
    """(median seconds of `fn`, median seconds of `base`) per call, sampled alternately.

    Each sample repeats the call until it lasts about ``SAMPLE_SECONDS``; samples are taken
    until `budget` seconds are spent (at least ``MIN_SAMPLES`` of each).
    """
    fn()  # warm-up: a numba kernel compiles here, the pages of `out` fault in
    base()
    t = time.perf_counter()
    fn()
    base()
    once = max(time.perf_counter() - t, 1e-9)
    if once * MIN_SAMPLES > 2 * budget:  # a very slow implementation: a few single calls
        samples = max(1, int(budget / once))
        tb = [_time1(base) for _ in range(samples)]
        tf = [_time1(fn) for _ in range(samples)]
        return statistics.median(tf), statistics.median(tb)
    number = max(1, int(SAMPLE_SECONDS / once))
    samples = max(MIN_SAMPLES, int(budget / (once * number)))
    tf, tb = [], []
    clock = time.perf_counter
    for _ in range(samples):
        t0 = clock()
        for _ in range(number):
            base()
        t1 = clock()
        for _ in range(number):
            fn()
        t2 = clock()
        tb.append((t1 - t0) / number)
        tf.append((t2 - t1) / number)
    return statistics.median(tf), statistics.median(tb)


def _time1(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fmt_n(n: int) -> str:
    """1000 -> '1e3', 30000000 -> '3e7', 65536 -> '65536'."""
    mant, exp = f"{n:.0e}".split("e")
    return f"{mant}e{int(exp)}" if float(f"{n:.0e}") == n else str(n)


class _Progress:
    """``[k/N] what`` on one line of stderr, only when stderr is a terminal."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.on = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total, self.done, self.width = total, 0, 0

    def step(self, what: str) -> None:
        self.done += 1
        if self.on:
            text = f"  [{self.done}/{self.total}] {what}"
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()
            self.width = len(text)

    def clear(self) -> None:
        if self.on and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


def _inputs(func: str, dtype: str, n: int, rng) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    x = (rng.standard_normal(n) * 5).astype(dtype)  # as the project's goals: 5 * N(0, 1)
    if func == "softplus_inverse":
        x = np.maximum(np.logaddexp(0.0, x), np.finfo(dtype).tiny).astype(dtype)
    args = (rng.standard_normal(n).astype(dtype), x) if func == "softplus_backward" else (x,)
    return args, np.empty(n, dtype)


def bench(sizes: Sequence[int] | None = None, dtypes: Sequence[str] = ("float32", "float64"),
          backends: Sequence[str] | None = None, *, quick: bool = False,
          func: str = "softplus", serial: bool = True, file: TextIO | None = None,
          progress: TextIO | None = None) -> list[dict]:
    """Measure and print the ratio table; return its rows.

    Parameters
    ----------
    sizes : sequence of int, optional
        Array lengths (default: 1e3, 1e5, 1e6 with `quick`, 1e3 to 1e7 otherwise).
    dtypes : sequence of str
        ``"float32"`` and/or ``"float64"``.
    backends : sequence of str, optional
        Backends to time with ``backend=`` (default: every available one). The automatic choice
        is always timed too, with the threads in force and (with `serial`) with one thread.
    quick : bool
        Fewer sizes and a shorter time per measurement (about 10 s in all).
    func : str
        ``"softplus"``, ``"softplus_grad"``, ``"softplus_backward"`` or ``"softplus_inverse"``.
    serial : bool
        Also time the automatic choice with ``set_num_threads(1)``.
    file : file-like, optional
        Where the table goes (default: stdout).
    progress : file-like, optional
        Where the progress line goes (default: stderr); only written when it is a terminal.

    Returns
    -------
    list of dict
        One per (dtype, n, implementation): ``func, dtype, n, impl, backend, threads, seconds,
        relu_seconds, ratio, elements_per_s``; ``impl`` is a backend name, ``"auto"``,
        ``"auto-1t"`` (automatic choice, one thread), ``"relu"`` or ``"copyto"``.
    """
    if func not in _dispatch.FUNCS:
        raise ValueError(f"func={func!r} is not one of {', '.join(_dispatch.FUNCS)}")
    file = file or sys.stdout
    sizes = tuple(int(n) for n in (sizes or (QUICK_SIZES if quick else FULL_SIZES)))
    names = list(backends or _dispatch.available_backends())
    budget = QUICK_BUDGET if quick else FULL_BUDGET
    nthreads = _threads.get_num_threads()
    impls = ["copyto"] + names + ["auto"] + (["auto-1t"] if serial and nthreads > 1 else [])
    f = getattr(_api, func)
    rng = np.random.default_rng(0)
    bar = _Progress(len(dtypes) * len(sizes) * len(impls), progress)
    rows: list[dict] = []
    per_element: dict[tuple[str, str], float] = {}  # seconds per element at the last size

    def show(line=""):
        bar.clear()
        print(line, file=file, flush=True)

    show(f"fastsoftplus bench: ratio = median time({func}(x, out=y)) / median time("
         f"np.maximum(x, 0, out=y)), timed alternately; lower is better")
    show(f"{nthreads} thread{'s' if nthreads > 1 else ''} (set_num_threads); x = 5*N(0,1), "
         f"contiguous; {_machine()}")
    head = (f"{'dtype':8} {'n':>6} {'ReLU':>9} {'copyto':>7}" + "".join(f" {n:>7}" for n in names)
            + "   auto (choice)" + ("   auto 1 thread" if "auto-1t" in impls else ""))
    show(head)
    try:
        for dt in dtypes:
            for n in sizes:
                args, y = _inputs(func, dt, n, rng)
                x = args[-1]

                def relu():
                    np.maximum(x, 0, out=y)
                cells = {}
                for impl in impls:
                    bar.step(f"{dt} n={fmt_n(n)} {impl}")
                    if per_element.get((dt, impl), 0.0) * n > MAX_CALL_SECONDS:
                        continue  # the reference backend at 1e7: seconds per call
                    if impl == "copyto":
                        def fn():
                            np.copyto(y, x)
                        backend, threads = None, 1
                    else:
                        backend = None if impl.startswith("auto") else impl
                        threads = 1 if impl == "auto-1t" else nthreads

                        def fn(backend=backend):
                            f(*args, out=y, backend=backend)
                    _threads.set_num_threads(threads)
                    try:
                        if impl.startswith("auto"):
                            backend = _dispatch.choose(func, np.dtype(dt), n, True, None).name
                        t, tb = measure(fn, relu, budget)
                    finally:
                        _threads.set_num_threads(nthreads)
                    per_element[dt, impl] = t / n
                    rows.append(dict(func=func, dtype=dt, n=n, impl=impl, backend=backend,
                                     threads=threads, seconds=t, relu_seconds=tb, ratio=t / tb,
                                     elements_per_s=n / t))
                    cells[impl] = rows[-1]
                tb = statistics.median(r["relu_seconds"] for r in cells.values())
                rows.append(dict(func=func, dtype=dt, n=n, impl="relu", backend=None, threads=1,
                                 seconds=tb, relu_seconds=tb, ratio=1.0, elements_per_s=n / tb))
                def ratio(impl):
                    return f"{cells[impl]['ratio']:>7.2f}" if impl in cells else f"{'-':>7}"
                line = f"{dt:8} {fmt_n(n):>6} {_fmt_time(tb):>9} {ratio('copyto')}"
                line += "".join(f" {ratio(b)}" for b in names)
                a = cells["auto"]
                line += f"   {a['ratio']:>4.2f} ({a['backend']})".ljust(18)
                if "auto-1t" in cells:
                    line += f" {cells['auto-1t']['ratio']:>4.2f}"
                show(line)
    finally:
        bar.clear()
    show(f"({_load()}; numpy {np.__version__}; '-': not timed, calls would exceed "
         f"{MAX_CALL_SECONDS} s; a busy machine inflates the ratios with threads)")
    return rows


def _fmt_time(s: float) -> str:
    return f"{s * 1e6:.1f}us" if s < 1e-3 else f"{s * 1e3:.2f}ms"


# --- the plot, shared with benchmarks/report.py ------------------------------------------------

def plot_throughput(rows: Sequence[dict], path: str, title: str = "",
                    footer: str = "") -> None:
    """Plot elements/s against n (log-log), one panel per dtype, ReLU and copyto dashed.

    Parameters
    ----------
    rows : sequence of dict
        With ``dtype``, ``n``, ``impl`` (the line's label) and ``elements_per_s``; rows whose
        ``impl`` is ``"relu"`` or ``"copyto"`` become the reference lines.
    path : str
        Output file (PNG, or any format matplotlib infers from the suffix).
    title, footer : str
        Figure title and a small line of text under the panels (machine, versions, command).

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = sorted({r["dtype"] for r in rows})
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6.4 * len(dtypes), 4.8), squeeze=False)
    refs = {"relu": dict(color="black", ls="--", lw=1.5, label="np.maximum (ReLU)"),
            "copyto": dict(color="gray", ls=":", lw=1.5, label="np.copyto (memory floor)")}
    for ax, dt in zip(axes[0], dtypes):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in rows:
            if r["dtype"] == dt:
                series.setdefault(r["impl"], []).append((r["n"], r["elements_per_s"]))
        for impl, pts in sorted(series.items(), key=lambda kv: (kv[0] in refs, kv[0])):
            pts.sort()
            style = refs.get(impl, dict(marker="o", ms=3, label=impl))
            if "auto" in impl:  # the line the plot is about
                style.update(lw=2.5, ms=5, zorder=3)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("elements (n)")
        ax.set_ylabel("elements per second (higher is better)")
        ax.set_title(dt)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    if footer:
        fig.text(0.01, 0.005, footer, fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.04 if footer else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- command line --------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m fastsoftplus bench``."""
    p.add_argument("--quick", action="store_true", help="fewer sizes, shorter timings (~10 s)")
    p.add_argument("--sizes", type=lambda s: [int(float(v)) for v in s.split(",")],
                   help="comma list of array lengths, e.g. 1e3,1e6")
    p.add_argument("--dtypes", default="float32,float64", help="comma list (float32,float64)")
    p.add_argument("--backends", help="comma list of backends to time (default: all available)")
    p.add_argument("--func", default="softplus", choices=list(_dispatch.FUNCS),
                   help="function to time (default softplus)")
    p.add_argument("--threads", type=int, help="set_num_threads(N) first")
    p.add_argument("--json", metavar="PATH", help="also write the measurements as JSON")
    p.add_argument("--plot", metavar="PATH",
                   help="also plot elements/s against size to PATH (PNG; needs matplotlib)")


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``bench`` from parsed command-line arguments."""
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib, which is not installed "
                         "(pip install matplotlib, or pip install 'fastsoftplus[bench]')")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        _threads.set_num_threads(args.threads)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        if d not in ("float32", "float64"):
            parser.error(f"--dtypes: {d!r} is not float32 or float64")
    if args.sizes is not None and any(n < 1 for n in args.sizes):
        parser.error("--sizes must be >= 1")
    backends = [n.strip() for n in args.backends.split(",")] if args.backends else None
    for n in backends or []:
        try:
            _dispatch.backend_module(n)  # unknown/unavailable: a clear error before timing
        except (ValueError, _dispatch.BackendUnavailableError) as e:
            parser.error(f"--backends: {e}")
    command = "python -m fastsoftplus bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == [
        "bench"] else None
    meta = metadata(command)
    rows = bench(args.sizes, dtypes, backends, quick=args.quick, func=args.func)
    meta["load_after"] = _load()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        plot_throughput([r for r in rows if r["impl"] != "auto-1t"], args.plot,
                        title=f"fastsoftplus {args.func}: throughput, {meta['threads']} threads",
                        footer=f"{meta['machine']}; numpy {meta['numpy']}, numba {meta['numba']}; "
                               f"{meta['load']}")
        print(f"wrote {args.plot}")
    return 0
