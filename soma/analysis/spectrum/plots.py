"""The PNGs: one figure per block (one panel per adapted matrix, the adapted components marked) and the relative
changes per block.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # drawn without pyplot: no display, no global backend switch


from .maths import MatrixSpectrum, SpectrumReport


# ---------------------------------------------------------------------------------------------- output
def block_name(block: int | None) -> str:
    return "other" if block is None else f"{block:02d}"


def plot_block(matrices: list[MatrixSpectrum], title: str, out_file: Path) -> None:
    """One panel per matrix: the spectrum (log scale), the adapted components marked, the trained one dashed."""
    columns = min(3, len(matrices))
    rows = math.ceil(len(matrices) / columns)
    fig = Figure(figsize=(4.2 * columns, 3.2 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, matrix in zip(axes.flat, matrices):
        index = np.arange(matrix.reference.size)
        ax.semilogy(index, np.maximum(matrix.reference, 1e-300), color="tab:blue", lw=1.2, label="pretrained"
                    if matrix.trained is not None else "singular values")
        if matrix.trained is not None:
            ax.semilogy(index, np.maximum(matrix.trained, 1e-300), color="tab:orange", lw=1.0, ls="--",
                        label="trained")
        adapted = matrix.adapted_indices()
        if adapted.size:
            ax.axvspan(adapted[0] - 0.5, adapted[-1] + 0.5, color="tab:red", alpha=0.12)
            ax.semilogy(adapted, np.maximum(matrix.reference[adapted], 1e-300), ".", color="tab:red", ms=3,
                        label=f"{matrix.which} r={matrix.rank} (adapted)")
        ax.set_title(f"{matrix.label}  {matrix.shape[0]}×{matrix.shape[1]}", fontsize=9)
        ax.set_xlabel("index", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="lower left")
    for ax in list(axes.flat)[len(matrices):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)


def plot_changes(report: SpectrumReport, out_file: Path) -> None:
    """Per block, the two relative changes: one line per matrix kind (q, k, v, proj, ...) and the block total."""
    changes = report.block_changes()
    blocks = [b for b in report.blocks() if b is not None and b in changes]
    labels = list(dict.fromkeys(m.label for m in report.matrices))
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, 2)
    for ax, attribute, total, title in (
            (axes[0], "relative_to_adapted", 0, "||ΔW|| / ||W_adapted||  (adapted rank-r part)"),
            (axes[1], "relative_to_weight", 1, "||ΔW|| / ||W||  (whole weight)")):
        for label in labels:
            points = [(m.block, getattr(m, attribute)) for m in report.matrices
                      if m.label == label and m.block in blocks]
            if points:
                ax.plot(*zip(*points), marker=".", lw=0.8, label=label)
        ax.bar(blocks, [changes[b][total] for b in blocks], color="0.8", zorder=0, label="block (all matrices)")
        ax.set_xlabel("block")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(blocks)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)
