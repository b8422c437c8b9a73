"""Turn measurement records into the report: Markdown tables and PNG plots.

Every timed result is shown as milliseconds, GFLOP/s, percent of the machine's GEMM
ceiling at the same thread count and dtype, and its speed ratio to each peer measured in
the same run (``× torch`` = PyTorch's time / this time: above 1 is faster than PyTorch).
"""
from __future__ import annotations

import os

from .cases import CELLS
from .runners import PEERS

GROUP_TITLES = {
    "issue4": "Engine target sizes (issue 4)",
    "deepbench": "DeepBench-style LSTM sizes (input = hidden)",
    "sweep": "Hidden-size sweep (input = hidden)",
    "step": "Streaming: one step (latency)",
}
GROUP_ORDER = ("issue4", "deepbench", "sweep", "step")


# ------------------------------------------------------------------ helpers
def _key(rec):
    c = rec["case"]
    return (c["cell"], c["B"], c["T"], c["I"], c["H"], c["mode"], c["dtype"])


def _ok(rec):
    return "skip" not in rec


def impl_order(records):
    """fastseq backends first (in the order measured), then the peers."""
    seen = []
    for rec in records:
        if rec["impl"] not in seen:
            seen.append(rec["impl"])
    return [i for i in seen if i not in PEERS] + [p for p in PEERS if p in seen]


def by_case(records):
    """``{case key: {impl: record}}`` keeping the order of first appearance."""
    table = {}
    for rec in records:
        table.setdefault(_key(rec), {})[rec["impl"]] = rec
    return table


def ratios(rec, row):
    """``{peer: peer time / this time}`` for the peers measured on the same case."""
    out = {}
    for peer in PEERS:
        other = row.get(peer)
        if other is not None and _ok(other) and _ok(rec) and peer != rec["impl"]:
            out[peer] = other["median_s"] / rec["median_s"]
    return out


def _fmt_time(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _fmt_ratio(x):
    return "" if x is None else f"{x:.2f}×"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ tables
def ceiling_table(ceiling):
    threads = sorted({int(t) for per in ceiling.values() for t in per})
    rows = [[dtype] + [f"{ceiling[dtype].get(str(t), float('nan')):.1f}" for t in threads]
            for dtype in ceiling]
    return _table(["GEMM GFLOP/s (NumPy a @ b)"] + [f"{t} thread{'s' * (t > 1)}"
                                                   for t in threads], rows)


def summary_table(records, group=None):
    """One row per case: each implementation's time, GFLOP/s and % of ceiling, then the
    best fastseq backend's speed ratio to each peer."""
    records = [r for r in records if group is None or r["case"].get("tag") == group]
    if not records:
        return ""
    impls = impl_order(records)
    peers = [p for p in PEERS if p in impls]
    header = ["case"] + impls + [f"best fastseq × {p}" for p in peers]
    rows = []
    for row in by_case(records).values():
        first = next(iter(row.values()))
        cells = [first["label"]]
        for impl in impls:
            rec = row.get(impl)
            if rec is None:
                cells.append("")
            elif not _ok(rec):
                cells.append("n/a")
            else:
                pct = rec.get("pct_ceiling")
                cells.append(f"{_fmt_time(rec['median_s'])} · {rec['gflops']:.1f} GF/s"
                             + (f" · {pct:.0f}%" if pct is not None else ""))
        own = [r for i, r in row.items() if i not in PEERS and _ok(r)]
        best = min(own, key=lambda r: r["median_s"]) if own else None
        for peer in peers:
            ratio = ratios(best, row).get(peer) if best else None
            cells.append(_fmt_ratio(ratio) + (f" ({best['impl']})" if ratio else ""))
        rows.append(cells)
    return _table(header, rows)


def detail_table(records):
    """Every measurement on its own row."""
    table = by_case(records)
    peers = [p for p in PEERS if any(r["impl"] == p for r in records)]
    header = (["case", "impl", "threads", "median", "GFLOP/s", "% ceiling"]
              + [f"× {p}" for p in peers] + ["best round", "rounds", "first call"])
    rows = []
    for row in table.values():
        for impl in impl_order(list(row.values())):
            rec = row[impl]
            if not _ok(rec):
                rows.append([rec["label"], impl, rec["threads"], "skipped: " + rec["skip"]]
                            + [""] * (len(header) - 4))
                continue
            r = ratios(rec, row)
            pct = rec.get("pct_ceiling")
            rows.append([rec["label"], impl, rec["threads"], _fmt_time(rec["median_s"]),
                         f"{rec['gflops']:.2f}", "" if pct is None else f"{pct:.1f}"]
                        + [_fmt_ratio(r.get(p)) for p in peers]
                        + [_fmt_time(rec["min_s"]), rec["rounds"], _fmt_time(rec["first_s"])])
    return _table(header, rows)


def scaling_table(scaling):
    """Time at 1 thread and at N threads, and the speed-up, per case and implementation."""
    cells = {}
    for rec in scaling:
        if _ok(rec):
            cells.setdefault((rec["label"], rec["impl"]), {})[rec["threads"]] = rec
    if not cells:
        return ""
    n = max(t for per in cells.values() for t in per)
    rows = []
    for (label, impl), per in cells.items():
        one, many = per.get(1), per.get(n)
        rows.append([label, impl, _fmt_time(one["median_s"]) if one else "",
                     _fmt_time(many["median_s"]) if many else "",
                     _fmt_ratio(one["median_s"] / many["median_s"]) if one and many else ""])
    return _table(["case", "impl", "1 thread", f"{n} threads", "speed-up"], rows)


def memory_table(memory):
    rows = []
    for m in memory:
        if "skip" in m:
            rows.append([m["label"], m["impl"], "skipped: " + m["skip"], "", "", ""])
            continue
        rows.append([m["label"], m["impl"], f"{m['peak'] / 2**20:.2f}",
                     f"{m['minimum'] / 2**20:.2f}", f"{m['ratio']:.2f}×",
                     "yes" if m["ratio"] <= 1.5 else "no"])
    return _table(["training step", "impl", "peak MiB", "minimum MiB", "peak / minimum",
                   "≤ 1.5×"], rows)


def coldstart_table(coldstart):
    rows = []
    for impl, runs in coldstart.items():
        if "skip" in runs:
            rows.append([impl, "skipped: " + runs["skip"]] + [""] * 5)
            continue
        for label in ("empty_cache", "warm_cache"):
            run = runs[label]
            for cell, t in run["cells"].items():
                if "skip" in t:
                    continue
                rows.append([impl, label.replace("_", " "), cell, f"{run['import']:.2f} s",
                             _fmt_time(t["first"]), _fmt_time(t["second"]),
                             f"{run['process']:.2f} s"])
    return _table(["impl", "Numba cache", "cell", "import", "first fwd+bwd",
                   "second fwd+bwd", "whole process"], rows)


def estimator_table(estimator):
    rows = []
    for e in estimator:
        if "skip" in e:
            rows.append([e["impl"], e["what"], "skipped: " + e["skip"], ""])
        else:
            rows.append([e["impl"], e["what"], f"{e['samples_per_s']:.0f}",
                         _fmt_time(e["seconds"])])
    return _table(["impl", "work", "samples/s", "time"], rows)


def render_markdown(data):
    meta = data["meta"]
    out = [f"# fastseq benchmark report ({data['settings']['matrix']})", "",
           f"{meta['date']} · {meta['cpu']} · {meta['cores']} cores available · "
           f"**{meta['threads']} threads** for every implementation · "
           f"fastseq {meta['fastseq']}, numpy {meta['numpy']} ({meta['blas']}), "
           f"numba {meta['numba']}"
           + (f", torch {meta['torch']}" if "torch" in meta else "")
           + (f", keras {meta['keras']} / tensorflow {meta['tensorflow']}"
              if "keras" in meta else ""), "",
           _load_line(meta),
           "Times are medians after warm-up rounds (JIT compilation excluded; see cold "
           "start). GFLOP/s use the nominal count `2·B·(I+H)·G·H` per step, training = 3× "
           "forward; % is of the GEMM ceiling below at the same thread count and dtype; "
           "`× peer` = peer's time / fastseq's time (above 1: fastseq is faster).", ""]
    if data.get("skipped"):
        out += ["Skipped: " + "; ".join(f"**{k}**: {v}" for k, v in data["skipped"].items()),
                ""]
    out += ["## Machine ceiling", "", ceiling_table(data["ceiling"]), ""]
    for group in GROUP_ORDER:
        table = summary_table(data["records"], group)
        if table:
            out += [f"## {GROUP_TITLES[group]}", "", table, ""]
    if data.get("scaling"):
        table = scaling_table(data["scaling"])
        if table:
            out += ["## Thread scaling", "", table, ""]
    if data.get("memory"):
        out += ["## Memory of one training step", "",
                "Peak resident memory of one forward + backward in a fresh process "
                "(`VmHWM` after resetting it through `/proc/self/clear_refs`, minus the "
                "resident size before the inputs were allocated), against the minimum from "
                "shapes: parameters + gradients + input + output gradient + the activations "
                "BPTT reads (h, gates; c for the LSTM; the recurrent candidate for the GRU).",
                "", memory_table(data["memory"]), ""]
    if data.get("coldstart"):
        out += ["## Cold start", "",
                "A fresh interpreter per implementation: import, then the first and second "
                "forward+backward of a small layer (B=16, T=20, I=16, H=32, float32). "
                "'empty' starts with an empty Numba cache (a new install), 'warm' finds it "
                "filled.", "", coldstart_table(data["coldstart"]), ""]
    if data.get("estimator"):
        out += ["## End to end: estimators", "", estimator_table(data["estimator"]), ""]
    plots = data.get("plots") or []
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    out += ["## Every measurement", "", detail_table(data["records"]), ""]
    return "\n".join(out)


def _load_line(meta):
    start, end = meta.get("load_start"), meta.get("load_end")
    if start is None:
        return ""
    text = f"Load average (1 min) {start}" + (f" at start, {end} at end" if end is not None
                                              else "") + f", {meta.get('elapsed_s', '?')} s."
    busy = max(start, end or 0) > meta["cores"] * 0.75
    if busy:
        text += (" **The machine was busy with other work: absolute numbers are "
                 "pessimistic and noisy; compare ratios within this run.**")
    return text + "\n"


def render_summary(data):
    """The short table for the README: issue-4 sizes, with date and thread count."""
    meta = data["meta"]
    return "\n".join([
        f"Measured {meta['date']} on {meta['cpu']}, {meta['threads']} threads "
        f"(`python -m fastseq bench --report`):", "",
        summary_table(data["records"], "issue4"), ""])


# ------------------------------------------------------------------ plots
def _colors(impls):
    """One fixed colour per implementation, the same in every panel and plot."""
    return {impl: f"C{k % 10}" for k, impl in enumerate(impls)}


def _style(impl, colors):
    if impl in PEERS:
        return dict(linestyle="--", marker="s", color=colors[impl])
    return dict(linestyle="-", marker="o", linewidth=2, color=colors[impl])


def plot_sweep(records, mode, dtype, ceiling, threads, path, title_suffix=""):
    """Throughput against hidden size, one panel per cell, one line per implementation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    recs = [r for r in records if r["case"].get("tag") == "sweep" and _ok(r)
            and r["case"]["mode"] == mode and r["case"]["dtype"] == dtype]
    if not recs:
        return None
    impls = impl_order(recs)
    colors = _colors(impl_order(records))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    top = (ceiling.get(dtype) or {}).get(str(threads))
    for ax, cell in zip(axes.flat, CELLS):
        for impl in impls:
            pts = sorted((r["case"]["H"], r["gflops"]) for r in recs
                         if r["impl"] == impl and r["case"]["cell"] == cell)
            if pts:
                ax.plot(*zip(*pts), label=impl, **_style(impl, colors))
        if top:
            ax.axhline(top, color="grey", linestyle=":", linewidth=1)
            ax.text(0.01, top, f" GEMM ceiling {top:.0f}",
                    transform=ax.get_yaxis_transform(), va="bottom", fontsize=8,
                    color="grey")
        ax.set_title(cell.replace("_", " "))
        ax.set_xscale("log", base=2)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylabel("GFLOP/s")
        ax.set_ylim(bottom=0)
    for ax in axes[1]:
        ax.set_xlabel("hidden size H (input = H)")
    Hs = sorted({r["case"]["H"] for r in recs})
    for ax in axes.flat:
        ax.set_xticks(Hs)
        ax.set_xticklabels([str(h) for h in Hs])
    found = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            found.setdefault(lab, h)
    labels = [i for i in impls if i in found]
    handles = [found[i] for i in labels]
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955),
               ncol=len(labels), frameon=False)
    what = "forward + backward" if mode == "train" else "forward"
    shape = sorted({(r["case"]["B"], r["case"]["T"]) for r in recs})
    shape = f"B={shape[0][0]} T={shape[0][1]}" if len(shape) == 1 else "mixed B, T"
    fig.suptitle(f"{what}, {dtype}, {shape}, {threads} threads{title_suffix}"
                 " (higher is better)", y=0.99)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bars(records, group, dtype, ceiling, threads, path, title_suffix=""):
    """GFLOP/s per case of one group, bars per implementation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    recs = [r for r in records if r["case"].get("tag") == group and _ok(r)
            and r["case"]["dtype"] == dtype and r["case"]["mode"] != "step"]
    if not recs:
        return None
    impls = impl_order(recs)
    colors = _colors(impl_order(records))
    table = by_case(recs)
    labels = [next(iter(row.values()))["label"].rsplit(" ", 1)[0] for row in table.values()]
    y = np.arange(len(labels))
    height = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(labels) * max(1, len(impls) / 2) + 1.8))
    for k, impl in enumerate(impls):
        vals = [row[impl]["gflops"] if impl in row else 0.0 for row in table.values()]
        ax.barh(y + (k - (len(impls) - 1) / 2) * height, vals, height, label=impl,
                color=colors[impl], hatch="//" if impl in PEERS else None)
    top = (ceiling.get(dtype) or {}).get(str(threads))
    if top:
        ax.axvline(top, color="grey", linestyle=":")
        ax.text(top, 1.0, f"GEMM ceiling {top:.0f} ", ha="right", va="bottom", fontsize=8,
                color="grey", transform=ax.get_xaxis_transform())
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("GFLOP/s (higher is better)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"{GROUP_TITLES[group]}, {dtype}, {threads} threads{title_suffix}",
                 loc="left", pad=14)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(data, folder):
    """Every plot the records allow; returns the file names (relative to ``folder``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        data.setdefault("skipped", {})["plots"] = \
            "matplotlib is not installed (pip install 'fastseq[bench]')"
        return []
    threads = data["meta"]["threads"]
    suffix = f" · {data['meta']['date']}"
    names = []
    for dtype in ("float32", "float64"):
        for mode in ("train", "fwd"):
            name = f"sweep_{mode}_{dtype}.png"
            if plot_sweep(data["records"], mode, dtype, data["ceiling"], threads,
                          os.path.join(folder, name), suffix):
                names.append(name)
        for group in ("issue4", "deepbench"):
            name = f"{group}_{dtype}.png"
            if plot_bars(data["records"], group, dtype, data["ceiling"], threads,
                         os.path.join(folder, name), suffix):
                names.append(name)
    return names
