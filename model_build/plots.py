"""The two figures of a model card: confusion matrix and training curves (matplotlib, Agg)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display on build machines or CI
    import matplotlib.pyplot as plt

    return plt


def confusion_png(cm: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts; rows = true class."""
    plt = _plt()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.55 * n), dpi=90)
    rows = cm.sum(axis=1, keepdims=True).clip(min=1)
    ax.imshow(cm / rows, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if cm[i, j] / rows[i, 0] > 0.5 else "black",
                    )
        ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def curves_png(metrics_jsonl: Path, path: Path) -> Path | None:
    """Loss and accuracy per epoch from train's ``metrics.jsonl`` (None if it has no rows)."""
    rows = [json.loads(ln) for ln in metrics_jsonl.read_text().splitlines() if ln.strip()]
    if not rows:
        return None
    plt = _plt()
    ep = [r["epoch"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=90)
    a1.plot(ep, [r["train_loss"] for r in rows], label="train (augmented, smoothed)")
    a1.plot(ep, [r["val_loss"] for r in rows], label="validation")
    a1.set_xlabel("epoch")
    a1.set_ylabel("cross-entropy")
    a1.legend(fontsize=8)
    a2.plot(ep, [r["train_top1"] for r in rows], label="train top-1 (augmented)")
    a2.plot(ep, [r["val_top1"] for r in rows], label="validation top-1")
    a2.set_xlabel("epoch")
    a2.legend(fontsize=8)
    head = [r["epoch"] for r in rows if r["phase"] == "head"]
    for a in (a1, a2):
        if head:
            a.axvspan(min(head) - 0.5, max(head) + 0.5, color="grey", alpha=0.15)
        a.grid(alpha=0.3)
    a2.set_title("grey band: frozen-backbone head phase", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
