"""Matplotlib figures of eval runs, drawn from the tables of `evals.analysis` (the notebooks show them; `dashboard`
is the README's `docs/eval-analysis.png`).

Figures are built with `matplotlib.figure.Figure`, not pyplot, so nothing global is touched: a notebook displays the
returned figure, a script saves it.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evals.analysis import described, failure_breakdown, latency_frame, pass_hat_k_curve, tag_comparison
from evals.results import RunResult


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")


def _short(label: str, width: int = 64) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def tag_bars(runs: Mapping[str, RunResult], ax: Axes, metric: str = "pass_rate") -> Axes:
    """A tag metric (pass_rate, argument_accuracy, tool_name_accuracy) per tag, one bar per run."""
    table = tag_comparison(runs, metric).iloc[::-1]  # first tag at the top
    if table.empty:
        ax.set_title(f"{metric.replace('_', ' ')} per tag (no data)")
        return ax
    table.columns = [_short(str(c)) for c in table.columns]
    table.plot.barh(ax=ax, width=0.8, legend=False)
    for bars in ax.containers:  # every bar says its value: a tag at 0 is a "0%", not an empty row
        values = [patch.get_width() for patch in bars]  # type: ignore[attr-defined]
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize="x-small", padding=2)  # type: ignore[arg-type]
    ax.set_xlim(0, 1.12)  # room for the labels of full bars
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_xlabel(metric.replace("_", " "))
    ax.set_ylabel("")
    ax.set_title(f"{metric.replace('_', ' ')} per tag")
    ax.tick_params(axis="y", labelsize="small")
    # The legend goes outside the plot, below the axis label, where constrained layout makes room for it.
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=min(3, len(table.columns)))
    return ax


def failure_bars(runs: Mapping[str, RunResult], ax: Axes) -> Axes:
    """The share of trials failing for each reason, one bar per run (a share, so runs with different trial counts
    compare)."""
    breakdown = failure_breakdown(runs)
    ax.set_title("trials failing, by reason")
    if breakdown.empty:
        return ax
    table = breakdown.pivot(index="kind", columns="run", values="share")[list(runs)]  # runs in the order given
    table.columns = [_short(str(c)) for c in table.columns]
    table.plot.bar(ax=ax, width=0.8, legend=False, rot=30)
    ax.set_xlabel("")
    ax.set_ylabel("share of trials")
    ax.tick_params(axis="x", labelsize="small")
    _legend(ax)
    return ax


def latency_hist(runs: Mapping[str, RunResult], ax: Axes) -> Axes:
    """Turn latency per run, of turns the model answered live (log scale: a hosted and a local model differ by 10x).
    Replayed turns measure the backend alone: they are left out, and the title names the runs that had only those."""
    everything = latency_frame(runs)
    df = everything[everything["model"] == "live"]
    replayed_only = [str(r) for r in everything["run"].unique() if r not in set(df["run"])]
    ax.set_title(
        "turn latency, model answering live"
        + (f" ({', '.join(map(_short, replayed_only))}: replayed, not shown)" if replayed_only else "")
    )
    if df.empty:
        return ax
    seconds = df.assign(latency_s=df["latency_ms"] / 1000.0)
    low, high = max(seconds["latency_s"].min(), 1e-3), max(seconds["latency_s"].max(), 1e-2)
    bins = pd.Series(range(31)).map(lambda i: low * (high / low) ** (i / 30)).tolist()
    for label, group in seconds.groupby("run", sort=False):
        ax.hist(group["latency_s"], bins=bins, alpha=0.6, label=_short(str(label)))
    ax.set_xscale("log")
    ax.set_xlabel("seconds per turn")
    ax.set_ylabel("turns")
    _legend(ax)
    return ax


def pass_hat_k_line(runs: Mapping[str, RunResult], ax: Axes) -> Axes:
    """pass^k against k per run (a single point when a run has one trial per case)."""
    df = pass_hat_k_curve(runs)
    for label, group in df.groupby("run", sort=False):
        ax.plot(group["k"], group["pass_hat_k"], marker="o", label=_short(str(label)))
    ax.set_ylim(0, 1.02)
    ax.margins(x=0.1)
    ax.set_xlabel("k (trials that must all pass)")
    ax.set_ylabel("pass^k")
    ax.set_title("pass^k against k")
    if not df.empty:
        ax.set_xticks(sorted(df["k"].unique()))
    if df.empty or df["k"].max() == 1:
        ax.text(0.5, 0.04, "1 trial per case (--trials K for a curve)", transform=ax.transAxes,
                ha="center", fontsize="small", color="gray")  # fmt: skip
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="center right")  # the lines sit high, the note low
    return ax


def dashboard(runs: Mapping[str, RunResult]) -> Figure:
    """The main figure: pass rate per tag, failure reasons, latency distribution and pass^k, runs side by side, each
    labelled with its model and prompt."""
    runs = described(runs)
    fig = Figure(figsize=(13, 10), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(1, 1.1))
    tag_bars(runs, fig.add_subplot(grid[:, 0]))
    failure_bars(runs, fig.add_subplot(grid[0, 1]))
    right = grid[1, 1].subgridspec(1, 2)
    for draw, ax in ((latency_hist, fig.add_subplot(right[0, 0])), (pass_hat_k_line, fig.add_subplot(right[0, 1]))):
        draw(runs, ax)
        if (legend := ax.get_legend()) is not None:  # the runs are named once, in the failure panel's legend
            legend.remove()
    return fig


def tag_figure(runs: Mapping[str, RunResult], *, empty: str, width: float = 9, height: float = 3.6) -> Figure:
    """The per-tag pass rates of `runs` in a figure of their own, or `empty` said in it when there are none."""
    fig, axes = figure(width=width, height=height)
    if not runs:
        axes.text(0.5, 0.5, empty, ha="center", va="center")
        axes.set_axis_off()
        return fig
    tag_bars(runs, axes)
    return fig


def figure(*, width: float = 10, height: float = 5) -> tuple[Figure, Axes]:
    """One empty axes, for a notebook cell that draws a single plot."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()
