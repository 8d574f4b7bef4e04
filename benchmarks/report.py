#!/usr/bin/env python3
"""Turn pytest-benchmark JSON from this suite into Markdown ratio tables and a throughput plot.

    python -m pytest benchmarks --benchmark-json=bench.json
    python benchmarks/report.py bench.json                        # tables on stdout
    python benchmarks/report.py bench.json --plot bench.png       # + elements/s vs n, log-log
    python benchmarks/report.py *.json --plot benchmarks/throughput.png --readme README.md
    python benchmarks/report.py threads.json --crossover          # serial vs threads

Every figure is ``extra_info["ratio_to_relu"]``: the case's median time over the median time of
``np.maximum(x, 0, out=y)`` timed alternately with it (see conftest.py). Several JSON files may be
given; a case measured in more than one of them (repeated runs) gets the median of its ratios
(and of its times): on this noisy 2-core machine one run of a case moves by up to 1.4x.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.dirname(HERE))  # fastsoftplus (the plot helper) if not installed

#: Rows of the main table: (impl, "all" | 1 threads, label).
MAIN_ROWS = [
    ("auto", "all", "**fastsoftplus** (automatic choice), all cores"),
    ("auto", 1, "**fastsoftplus** (automatic choice), 1 thread"),
    ("cython", "all", "cython backend, all cores"),
    ("numba", "all", "numba backend, all cores"),
    ("numpy", "all", "numpy backend (reference)"),
    ("torch", "all", "torch `softplus(out=)`, all cores"),
    ("torch", 1, "torch `softplus(out=)`, 1 thread"),
    ("jax", "all", "jax.jit(jax.nn.softplus)"),
    ("numexpr", "all", "numexpr, all cores"),
    ("scipy", "all", "scipy.special.softplus"),
    ("naive", "all", "NumPy `where(x > 20, x, log1p(exp(x)))`"),
    ("copyto", "all", "np.copyto(y, x) (memory floor)"),
]
OTHER_FUNCS = ("softplus_grad", "softplus_backward", "softplus_inverse")
OTHER_ROWS = [
    ("auto", "all", "fastsoftplus, all cores"),
    ("auto", 1, "fastsoftplus, 1 thread"),
    ("torch", "all", "torch, all cores"),
    ("naive", "all", "naive NumPy"),
]
#: Issue 5's goals: (label, func, dtype, n, threads, impl compared, bound on the ratio to ReLU).
GOALS = [
    ("f32 1e7 all cores", "softplus", "float32", 10**7, "all", 0.55),
    ("f32 1e5 all cores", "softplus", "float32", 10**5, "all", 1.0),
    ("f32 1e5 1 thread", "softplus", "float32", 10**5, 1, 1.2),
    ("f32 1e6 1 thread", "softplus", "float32", 10**6, 1, 1.2),
    ("f64 1e7 all cores", "softplus", "float64", 10**7, "all", 1.2),
    ("f32 1e3 (call overhead)", "softplus", "float32", 10**3, "all", 2.0),
    ("grad f32 1e7 all cores", "softplus_grad", "float32", 10**7, "all", 0.6),
    ("backward f32 1e7 all cores", "softplus_backward", "float32", 10**7, "all", 0.75),
]


def fmt_n(n: int) -> str:
    mant, exp = f"{n:.0e}".split("e")
    return f"{mant}e{int(exp)}" if float(f"{n:.0e}") == n else str(n)


def load(paths: list[str]) -> tuple[dict, dict]:
    """(results keyed by (func, dtype, n, layout, threads, impl), machine_info of the last file)."""
    runs, machine, loads = defaultdict(list), {}, []
    for p in paths:
        with open(p) as fh:
            d = json.load(fh)
        machine = d.get("machine_info", {})
        fi = machine.get("fastsoftplus", {})
        loads += [v[0] for v in (fi.get("load_start"), fi.get("load_end")) if v]
        for b in d["benchmarks"]:
            e = b.get("extra_info", {})
            if "ratio_to_relu" not in e:
                continue
            runs[(e["func"], e["dtype"], e["n"], e["layout"], e["threads"], e["impl"])].append(e)
    res = {key: _median_entry(es) for key, es in runs.items()}
    if loads and "fastsoftplus" in machine:
        machine["fastsoftplus"]["load_range"] = (min(loads), max(loads))
    machine["files"] = len(paths)
    return res, machine


def _median_entry(entries: list[dict]) -> dict:
    """One case measured in several runs: the last run's entry with the median ratio, time and
    throughput (the tables and the plot then show the same runs' medians)."""
    e = dict(entries[-1])
    for key in ("ratio_to_relu", "median_s", "elements_per_s"):
        if any(key not in x for x in entries):
            continue
        vals = sorted(x[key] for x in entries)
        mid = len(vals) // 2
        e[key] = vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2
    e["runs"] = len(entries)
    return e


class Results:
    def __init__(self, res: dict, machine: dict, command: str | None = None,
                 note: str | None = None):
        self.res, self.machine, self.command, self.note = res, machine, command, note
        fi = machine.get("fastsoftplus", {})
        self.nall = fi.get("usable_cores") or max((k[4] for k in res), default=1)

    def get(self, func, dtype, n, layout, threads, impl):
        t = self.nall if threads == "all" else threads
        return self.res.get((func, dtype, n, layout, t, impl))

    def sizes(self, func, dtype, layout="contig"):
        return sorted({k[2] for k in self.res if k[0] == func and k[1] == dtype and k[3] == layout})


def cell(e, backend=False) -> str:
    if e is None:
        return ""
    s = f"{e['ratio_to_relu']:.2f}"
    return s


def table(R: Results, func: str, dtype: str, rows, layout="contig", title=None) -> str:
    sizes = R.sizes(func, dtype, layout)
    if not sizes:
        return ""
    head = f"| {title or func} {dtype}{'' if layout == 'contig' else ', ' + layout} | " + \
        " | ".join(f"n={fmt_n(n)}" for n in sizes) + " |"
    lines = [head, "|" + "---|" * (len(sizes) + 1)]
    for impl, threads, label in rows:
        cells = [cell(R.get(func, dtype, n, layout, threads, impl)) for n in sizes]
        if not any(cells):
            continue
        if impl == "auto":  # which backend the dispatcher chose, where it changes
            chosen = [R.get(func, dtype, n, layout, threads, impl) for n in sizes]
            cells = [c + (f" ({e['backend']})" if c and e.get("backend") else "")
                     for c, e in zip(cells, chosen)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    relu = [R.get(func, dtype, n, layout, "all", "relu") for n in sizes]
    lines.append("| *ReLU time* | " + " | ".join(
        _fmt_time(e["median_s"]) if e else "" for e in relu) + " |")
    return "\n".join(lines)


def _fmt_time(s: float) -> str:
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def goals(R: Results) -> str:
    lines = ["| goal (ratio to ReLU, automatic choice) | bound | measured | |", "|---|---|---|---|"]
    for label, func, dtype, n, threads, bound in GOALS:
        e = R.get(func, dtype, n, "contig", threads, "auto")
        if e is None:
            lines.append(f"| {label} | {bound} | not in this run | |")
            continue
        r = e["ratio_to_relu"]
        lines.append(f"| {label} | {bound} | {r:.2f} | {'met' if r <= bound else 'missed'} |")
    # fused backward vs forward, and torch at every size >= 1e4 with the same thread count
    worst_bw, worst_torch, at_1e7 = None, None, []
    for (func, dtype, n, layout, t, impl), e in R.res.items():
        if impl != "auto" or layout != "contig":
            continue
        if func == "softplus_backward":
            fw = R.res.get(("softplus", dtype, n, layout, t, "auto"))
            if fw and n >= 10**4:  # each through its own run's ReLU: the runs are minutes apart
                q = e["ratio_to_relu"] / fw["ratio_to_relu"]
                if worst_bw is None or q > worst_bw[0]:
                    worst_bw = (q, dtype, n, t)
        if func == "softplus" and n >= 10**4:
            tr = R.res.get((func, dtype, n, layout, t, "torch"))
            if tr:
                q = tr["ratio_to_relu"] / e["ratio_to_relu"]  # how many times faster than torch
                if worst_torch is None or q < worst_torch[0]:
                    worst_torch = (q, dtype, n, t)
                if n == 10**7:
                    at_1e7.append((q, dtype, t))
    if worst_bw:
        q, dt, n, t = worst_bw
        lines.append(f"| backward time / forward time, worst n >= 1e4 | 1.3 | {q:.2f} ({dt}, "
                     f"n={fmt_n(n)}, {t} thr) | {'met' if q <= 1.3 else 'missed'} |")
    if worst_torch:
        q, dt, n, t = worst_torch
        lines.append(f"| speed-up over torch, same threads, worst n >= 1e4 | > 1 | {q:.2f}x ({dt}, "
                     f"n={fmt_n(n)}, {t} thr) | {'met' if q > 1 else 'missed'} |")
    for q, dt, t in sorted(at_1e7, key=lambda v: (v[1], -v[2])):
        lines.append(f"| speed-up over torch at 1e7, {dt}, {t} thr | 3 | {q:.2f}x | "
                     f"{'met' if q >= 3 else 'missed'} |")
    return "\n".join(lines)


def footer(R: Results) -> str:
    m = R.machine
    fi = m.get("fastsoftplus", {})
    v = fi.get("versions", {})
    be = fi.get("backends", {})
    cy = be.get("cython", {})
    nb = be.get("numba", {})
    parts = [f"Measured on {fi.get('cpu') or m.get('cpu', {}).get('brand_raw', '?')}",
             f"Python {m.get('python_version', '?')}",
             ", ".join(f"{k} {val}" for k, val in v.items())]
    if cy:
        parts.append(f"cython SIMD {cy.get('simd')}, OpenMP {cy.get('openmp')}")
    if nb:
        parts.append(f"numba threading {nb.get('threading', '?').split(' ')[0]}")
    if fi.get("load_range"):
        lo, hi = fi["load_range"]
        parts.append(f"1-min load average {lo}-{hi} during the runs")
    text = "; ".join(parts) + "."
    cmd = R.command or fi.get("command")
    if cmd:
        text += (f"\nCommand: `{cmd}`, then `python benchmarks/report.py <those JSON files> "
                 f"--readme README.md`.")
    if R.note:
        text += "\n" + R.note
    runs = max((e.get("runs", 1) for e in R.res.values()), default=1)
    text += (f"\nRatio = median time / median time of `np.maximum(x, 0, out=y)` timed alternately "
             f"in the same run (lower is better)"
             f"{f', then the median over (up to) {runs} runs' if runs > 1 else ''}; x = 5*N(0,1), out= "
             f"preallocated; \"all cores\" = {R.nall} threads.")
    return text


def others_compact(R: Results) -> str:
    """One row per (func, dtype): fastsoftplus all cores, torch all cores in parentheses."""
    sizes = R.sizes("softplus_grad", "float32") or R.sizes("softplus", "float32")
    if not sizes:
        return ""
    lines = ["| other functions, all cores: fastsoftplus (torch) | " +
             " | ".join(f"n={fmt_n(n)}" for n in sizes) + " |", "|" + "---|" * (len(sizes) + 1)]
    for func in OTHER_FUNCS:
        for dtype in ("float32", "float64"):
            cells = []
            for n in sizes:
                e = R.get(func, dtype, n, "contig", "all", "auto")
                t = R.get(func, dtype, n, "contig", "all", "torch")
                cells.append((f"{e['ratio_to_relu']:.2f}" if e else "") +
                             (f" ({t['ratio_to_relu']:.2f})" if t else ""))
            if any(cells):
                lines.append(f"| {func} {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(R: Results, compact: bool = False) -> str:
    parts = []
    for dtype in ("float32", "float64"):
        t = table(R, "softplus", dtype, MAIN_ROWS)
        if t:
            parts.append(t)
    if compact:
        t = others_compact(R)
        if t:
            parts.append(t)
    else:
        for dtype in ("float32", "float64"):
            for func in OTHER_FUNCS:
                t = table(R, func, dtype, OTHER_ROWS)
                if t:
                    parts.append(t)
    if not compact:
        for dtype in ("float32", "float64"):
            t = table(R, "softplus", dtype, MAIN_ROWS, layout="strided")
            if t:
                parts.append(t)
    parts.append(goals(R))
    parts.append(footer(R).replace("\n", "  \n"))
    return "\n\n".join(parts) + "\n"


def crossover(R: Results) -> str:
    """Time with all cores / time with 1 thread, per backend, func, dtype and n."""
    keys = sorted({(k[0], k[5], k[1]) for k in R.res if k[5] not in ("relu", "copyto")})
    sizes = sorted({k[2] for k in R.res})
    lines = ["| func backend dtype | " + " | ".join(fmt_n(n) for n in sizes) + " | crossover |",
             "|" + "---|" * (len(sizes) + 2)]
    for func, impl, dtype in keys:
        q = {}
        for n in sizes:
            a = R.res.get((func, dtype, n, "contig", R.nall, impl))
            b = R.res.get((func, dtype, n, "contig", 1, impl))
            if a and b:
                q[n] = a["median_s"] / b["median_s"]
        # smallest n from which threads win at every larger measured n (5% margin)
        cross = None
        for n in sorted(q, reverse=True):
            if q[n] < 0.95:
                cross = n
            else:
                break
        lines.append(f"| {func} {impl} {dtype} | " + " | ".join(
            f"{q[n]:.2f}" if n in q else "" for n in sizes) + f" | {fmt_n(cross) if cross else '-'} |")
    lines.append("\n(time with all cores / time with 1 thread through each backend's run(); < 1: "
                 "threads win. Crossover: the smallest n from which they win by > 5% at every "
                 "larger n.)")
    return "\n".join(lines)


def plot(R: Results, path: str) -> None:
    from fastsoftplus._bench import plot_throughput
    rows = []
    impls = ("auto", "cython", "numba", "torch", "numexpr", "jax", "naive", "relu", "copyto")
    for (func, dtype, n, layout, t, impl), e in R.res.items():
        if func == "softplus" and layout == "contig" and t == R.nall and impl in impls:
            label = {"auto": "fastsoftplus (auto)", "torch": "torch"}.get(impl, impl)
            rows.append(dict(dtype=dtype, n=n, impl=label if impl not in ("relu", "copyto")
                             else impl, elements_per_s=e["elements_per_s"]))
    plot_throughput(rows, path, title=f"softplus throughput, {R.nall} threads",
                    footer=footer(R).split("\n")[0])


def replace_readme(path: str, text: str) -> None:
    with open(path) as fh:
        readme = fh.read()
    pat = re.compile(r"(<!-- ratio-table -->\n).*?(<!-- /ratio-table -->)", re.S)
    if not pat.search(readme):
        sys.exit(f"{path}: no <!-- ratio-table --> ... <!-- /ratio-table --> markers")
    readme = pat.sub(lambda m: m.group(1) + text + m.group(2), readme)
    with open(path, "w") as fh:
        fh.write(readme)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="--benchmark-json output(s) of this suite")
    p.add_argument("--plot", metavar="PNG", help="plot elements/s against n (needs matplotlib)")
    p.add_argument("--readme", metavar="README", help="replace the table between the markers")
    p.add_argument("--crossover", action="store_true", help="serial vs threads table")
    p.add_argument("--out", metavar="MD", help="write the Markdown here instead of stdout")
    p.add_argument("--command", help="how the JSON was produced (default: the recorded command)")
    p.add_argument("--note", help="a line to add under the tables (e.g. how quiet the machine was)")
    a = p.parse_args(argv)
    R = Results(*load(a.json), command=a.command, note=a.note)
    if not R.res:
        sys.exit("no results with extra_info['ratio_to_relu'] (was it run with "
                 "--benchmark-disable?)")
    text = crossover(R) if a.crossover else markdown(R)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    else:
        print(text)
    if a.plot:
        plot(R, a.plot)
    if a.readme:
        text = markdown(R, compact=True)
        if a.plot:
            rel = os.path.relpath(a.plot, os.path.dirname(os.path.abspath(a.readme)))
            text += f"\n![softplus throughput against size]({rel})\n"
        replace_readme(a.readme, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
