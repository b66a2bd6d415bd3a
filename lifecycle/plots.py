"""Tiny PNG plots embedded in Dagster metadata as markdown data URIs.

Dagster stores metadata in its event log, so each image is kept to a few KB (small
figure, low dpi, optimised PNG). Figures are built with ``matplotlib.figure.Figure`` and
an explicit Agg canvas rather than pyplot, so nothing touches global state that
concurrent runs in the same process could share or leak.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from lifecycle.metrics import calibration_bins, roc_auc, roc_curve

__all__ = [
    "calibration_plot",
    "figure_to_markdown",
    "histogram_plot",
    "importance_plot",
    "roc_plot",
]

_FIGSIZE = (3.2, 2.4)
_DPI = 70
_FONTSIZE = 7
_MAX_CURVE_POINTS = 400
_PALETTE_COLORS = 32


def _new_axes(title: str = "") -> tuple[Figure, Axes]:
    fig = Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.tick_params(labelsize=_FONTSIZE, length=2, pad=1)
    if title:
        ax.set_title(title, fontsize=_FONTSIZE + 1)
    return fig, ax


def _label_axes(ax: Axes, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel, fontsize=_FONTSIZE, labelpad=1)
    ax.set_ylabel(ylabel, fontsize=_FONTSIZE, labelpad=1)


def _no_data(title: str, alt: str) -> str:
    fig, ax = _new_axes(title)
    ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=_FONTSIZE + 2)
    ax.set_axis_off()
    return figure_to_markdown(fig, alt)


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ~_MAX_CURVE_POINTS vertices; invisible at this size, saves render time."""
    if x.size <= _MAX_CURVE_POINTS:
        return x, y
    idx = np.unique(np.linspace(0, x.size - 1, _MAX_CURVE_POINTS).round().astype(np.int64))
    return x[idx], y[idx]


def figure_to_markdown(fig: Figure, alt: str) -> str:
    """Render ``fig`` to a paletted PNG and wrap it as ``![alt](data:image/png;base64,...)``."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
    # A small adaptive palette keeps anti-aliased text legible at a third of the RGB size.
    paletted = rgb.quantize(colors=_PALETTE_COLORS, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    paletted.save(buf, format="PNG", optimize=True)
    encoded = base64.b64encode(buf.getvalue()).decode("ascii")
    safe_alt = alt.replace("[", "(").replace("]", ")").replace("\n", " ")
    return f"![{safe_alt}](data:image/png;base64,{encoded})"


def roc_plot(
    y: np.ndarray,
    s: np.ndarray,
    label: str = "model",
    baseline: tuple[np.ndarray, str] | None = None,
) -> str:
    """ROC curve of ``s`` (AUC in legend), optionally against a second scorer on the same rows."""
    fig, ax = _new_axes("ROC")
    curves = [(s, label)] if baseline is None else [(s, label), baseline]
    for scores, name in curves:
        fpr, tpr = _thin(*roc_curve(y, scores))
        ax.plot(fpr, tpr, linewidth=1, label=f"{name} ({roc_auc(y, scores):.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", linewidth=0.7, color="grey")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    _label_axes(ax, "false positive rate", "true positive rate")
    ax.legend(fontsize=_FONTSIZE, loc="lower right", frameon=False)
    return figure_to_markdown(fig, f"ROC {label}")


def calibration_plot(y: np.ndarray, s: np.ndarray, bins: int = 10) -> str:
    """Reliability diagram: observed churn rate against mean predicted probability per bin."""
    mean_score, observed, _ = calibration_bins(y, s, bins)
    fig, ax = _new_axes("calibration")
    ax.plot([0, 1], [0, 1], linestyle=":", linewidth=0.7, color="grey")
    ax.plot(mean_score, observed, marker="o", markersize=2.5, linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    _label_axes(ax, "mean predicted", "observed rate")
    return figure_to_markdown(fig, "calibration")


def importance_plot(importance: Mapping[str, float], top: int = 12) -> str:
    """Horizontal bars of the ``top`` most important features, largest at the top."""
    ranked = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[: max(top, 0)]
    if not ranked:
        return _no_data("feature importance", "feature importance")
    names = [n if len(n) <= 18 else n[:17] + "…" for n, _ in reversed(ranked)]
    values = [v for _, v in reversed(ranked)]
    fig, ax = _new_axes("feature importance")
    ax.barh(np.arange(len(values)), values, height=0.7)
    ax.set_yticks(np.arange(len(values)), labels=names)
    _label_axes(ax, "share of gain", "")
    return figure_to_markdown(fig, "feature importance")


def histogram_plot(
    values_by_name: Mapping[str, np.ndarray], bins: int = 20, title: str = ""
) -> str:
    """Overlaid step histograms on shared bins, density-normalised so sizes can differ."""
    cleaned = {}
    for name, values in values_by_name.items():
        arr = np.asarray(values, dtype=np.float64).ravel()
        cleaned[name] = arr[np.isfinite(arr)]
    non_empty = {k: v for k, v in cleaned.items() if v.size}
    alt = title or "distribution"
    if not non_empty:
        return _no_data(title, alt)
    pooled = np.concatenate(list(non_empty.values()))
    lo, hi = float(pooled.min()), float(pooled.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = _new_axes(title)
    for name, arr in non_empty.items():
        ax.hist(arr, bins=edges.tolist(), density=True, histtype="step", linewidth=1, label=name)
    _label_axes(ax, "value", "density")
    ax.legend(fontsize=_FONTSIZE, frameon=False)
    return figure_to_markdown(fig, alt)
