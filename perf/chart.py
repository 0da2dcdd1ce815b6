"""The bar chart of `make bench` (matplotlib, log scale): one panel per workload, every row."""

from __future__ import annotations

from pathlib import Path

import harness as h
import workloads as wl

COLORS = {
    "antflow": "#1f77b4",
    "peer": "#ff7f0e",
    "floor": "#2ca02c",
    "threads": "#d62728",
    "asyncio": "#7f7f7f",
}
NAMES = {
    "antflow": "antflow (this repo)",
    "peer": "antflow 0.10.0",
    "asyncio": "plain asyncio",
    "floor": "hand-written floor",
    "threads": "ThreadPoolExecutor",
}
OTHER = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")  # plugins' own families


def chart(jobs: list[h.Job], path: Path, title: str) -> str:
    """Draw the chart into ``path``; returns its path relative to the repo, or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.patches as mpatches
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    done = [j for j in jobs if j.value is not None]
    workloads = [w for w in wl.WORKLOADS if any(j.workload == w for j in done)]
    if not workloads:
        return "no results: no chart"
    colors = dict(COLORS)
    for i, fam in enumerate(sorted({j.contender.group for j in done} - set(colors))):
        colors[fam] = OTHER[i % len(OTHER)]
    heights = [max(2.0, 0.32 * sum(1 for j in done if j.workload == w) + 1.0) for w in workloads]
    fig, axes = plt.subplots(
        len(workloads),
        1,
        figsize=(10, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, w in zip(axes[:, 0], workloads, strict=True):
        rows = [j for j in done if j.workload == w]
        labels = [f"{j.label} [{j.loop}]" for j in rows]
        if wl.WORKLOAD[w].kind == "memory":
            values = [(j.value or 0.0) / 1e6 for j in rows]
            unit = "peak RSS growth, MB (log; bars start at 0.01)"
        else:
            values = [(j.value or 0.0) * 1e6 for j in rows]
            unit = "µs per task, median (log)"
        drawn = [max(v, 0.01) for v in values]
        bars = ax.barh(range(len(rows)), drawn, color=[colors[j.contender.group] for j in rows])
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(unit, fontsize=8)
        ax.set_title(f"{w} (n={max(j.n for j in rows if not j.suffix):,})", fontsize=10)
        ax.bar_label(bars, [f"{v:.3g}" for v in values], fontsize=7, padding=2)
        ax.margins(x=0.15)
    present = [f for f in colors if any(j.contender.group == f for j in done)]
    handles = [mpatches.Patch(color=colors[f], label=NAMES.get(f, f)) for f in present]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=max(1, len(handles)))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.4 / sum(heights), 1, 1 - 0.45 / sum(heights)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(h.ROOT))
