"""The benchmark's chart: fastrnn's speed-up over each anchor (needs matplotlib)."""

from __future__ import annotations

from typing import Any

from fastrnn.bench.cases import IMPLS, LABELS, MODES
from fastrnn.bench.report import group_by_case


def write_plot(report: dict[str, Any], path: str) -> None:
    """Bar chart of fastrnn's speed-up over each anchor, per row and cell, one panel per mode.

    Parameters
    ----------
    report : dict
        A report (:func:`fastrnn.bench.report.build_report`).
    path : str
        The PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    modes = [m for m in MODES if any(d["mode"] == m for d in report["results"])]
    n_groups = max((len([1 for m, *_ in group_by_case(report) if m == mode]) for mode in modes),
                   default=1)
    fig, axes = plt.subplots(len(modes), 1, squeeze=False,
                             figsize=(max(10.0, 3.0 + 1.0 * n_groups), 4.5 * max(len(modes), 1)))
    colors = {a: f"C{k}" for k, a in enumerate(IMPLS[1:])}
    for ax, mode in zip(axes[:, 0], modes, strict=True):
        groups = [(r, c, ds) for m, r, c, ds in group_by_case(report) if m == mode]
        anchors = [a for a in IMPLS[1:]
                   if any(d["impl"] == a and d["fastrnn_speedup"] for _, _, ds in groups
                          for d in ds)]
        width = 0.8 / max(len(anchors), 1)
        for k, a in enumerate(anchors):
            xs, ys = [], []
            for j, (_, _, ds) in enumerate(groups):
                d = next((d for d in ds if d["impl"] == a), None)
                if d and d["fastrnn_speedup"]:
                    xs.append(j + (k - (len(anchors) - 1) / 2) * width)
                    ys.append(d["fastrnn_speedup"])
            # bars grow from 1x: up where fastrnn is faster, down where it is slower
            ax.bar(xs, [y - 1.0 for y in ys], bottom=1.0, width=width, color=colors[a],
                   label=f"vs {LABELS[a]}")
            for xv, yv in zip(xs, ys, strict=True):
                ax.annotate(f"{yv:.2g}", (xv, yv), ha="center", fontsize=6,
                            va="bottom" if yv >= 1 else "top",
                            xytext=(0, 1 if yv >= 1 else -1), textcoords="offset points")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{r}\n{c}" for r, c, _ in groups], fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel("fastrnn speed-up")
        ax.set_title(f"{mode}: other implementation's time / fastrnn's time "
                     "(above 1x: fastrnn is faster)", fontsize=10)
        if anchors:
            ax.legend(fontsize=8)
        ax.grid(axis="y", which="major", alpha=0.3)
    fig.suptitle(f"fastrnn {report['fastrnn'].get('version')} on {report['machine']['cpu']}, "
                 f"{report['threads']} thread(s), {report['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
