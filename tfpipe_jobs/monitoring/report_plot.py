"""The picture of a day's monitoring: each feature's drift and skew against its threshold.

One horizontal bar per feature and comparison, its length the distance divided by the
feature's threshold, so PSI and L-infinity share one axis and the line at 1 is every
threshold; a bar beyond it is red (its action: stop) or orange (warn).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from tfpipe_jobs import artifacts

_COLOURS = {"ok": "#4c72b0", "warn": "#dd8452", "stop": "#c44e52"}


def plot(path: str, title: str, panels: Sequence[tuple[str, Sequence[dict[str, Any]], str]]) -> None:
    """Write a PNG: one panel per (name, FeatureCheck JSONs, note shown when there are none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = 1.2 + 0.32 * max([len(checks) for _, checks, _ in panels] + [3])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), height), squeeze=False)
    for ax, (name, checks, empty) in zip(axes[0], panels, strict=True):
        ax.set_title(name)
        if not checks:
            ax.text(0.5, 0.5, empty, ha="center", va="center", wrap=True, transform=ax.transAxes)
            ax.set_axis_off()
            continue
        rows = sorted(checks, key=lambda c: c["feature"], reverse=True)
        ratios = [c["value"] / c["threshold"] if c["threshold"] > 0 else float(c["value"] > 0) * 2 for c in rows]
        colours = [_COLOURS[c["action"]] if c["exceeded"] else _COLOURS["ok"] for c in rows]
        ax.barh(range(len(rows)), ratios, color=colours)
        ax.set_yticks(range(len(rows)), [f"{c['feature']} ({c['measure']})" for c in rows], fontsize=8)
        for i, c in enumerate(rows):
            ax.text(ratios[i], i, f" {c['value']:.3g} / {c['threshold']:g}", va="center", fontsize=7)
        ax.axvline(1.0, color="grey", linestyle=":")
        ax.set_xlim(0, max([*ratios, 1.0]) * 1.35)
        ax.set_xlabel("distance / threshold (1 = threshold)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    artifacts.write_bytes(path, buffer.getvalue())
