"""Writing a report: the CSV, the PNGs and the printed table.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...utils import check_output_dir

from .maths import SpectrumReport
from .plots import block_name, plot_block, plot_changes
from .sources import analyse_input


def write_csv(report: SpectrumReport, out_file: Path) -> None:
    """Every matrix's numbers: shape, rank, smallest/largest singular values, norms and relative changes."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "matrix", "block", "rows", "cols", "rank", "adapted", "sigma_max", "sigma_min",
                         "weight_norm", "adapted_norm", "delta_norm", "delta_over_adapted", "delta_over_weight"])
        for m in report.matrices:
            writer.writerow([m.layer, m.label, "" if m.block is None else m.block, *m.shape, m.rank, m.which,
                             f"{m.reference[0]:.6g}", f"{m.reference[-1]:.6g}", f"{m.weight_norm:.6g}",
                             f"{m.adapted_norm:.6g}", "" if m.delta_norm is None else f"{m.delta_norm:.6g}",
                             "" if m.delta_norm is None else f"{m.relative_to_adapted:.6g}",
                             "" if m.delta_norm is None else f"{m.relative_to_weight:.6g}"])


def format_table(report: SpectrumReport) -> str:
    """Per block: the range of the adapted singular values and, with a trained checkpoint, the changes."""
    changes = report.block_changes()
    header = f"{'block':>5}  {'matrices':>8}  {'sigma_max':>9}  {'adapted sigma':>19}"
    if report.has_changes:
        header += f"  {'|dW|/|W_adapted|':>16}  {'|dW|/|W|':>9}"
    lines = [f"reference: {report.reference}", header, "-" * len(header)]
    for block in report.blocks():
        members = [m for m in report.matrices if m.block == block]
        adapted = np.concatenate([m.reference[m.adapted_indices()] for m in members])
        span = f"{adapted.min():.3g}..{adapted.max():.3g}" if adapted.size else "-"
        line = (f"{block_name(block):>5}  {len(members):>8}  {max(m.reference[0] for m in members):>9.3g}  "
                f"{span:>19}")
        if report.has_changes and block in changes:
            line += f"  {changes[block][0]:>16.3e}  {changes[block][1]:>9.3e}"
        lines.append(line)
    return "\n".join(lines + report.notes)


def write_report(report: SpectrumReport, out_dir: str | Path) -> list[Path]:
    """The figures (and the CSV of numbers) of ``report`` under ``out_dir``; returns the files written."""
    out_dir = Path(out_dir)
    written = []
    for block in report.blocks():
        members = [m for m in report.matrices if m.block == block]
        out_file = out_dir / f"spectrum_block{block_name(block)}.png"
        title = f"block {block}" if block is not None else "layers outside the blocks"
        plot_block(members, f"{title}: singular values ({report.reference})", out_file)
        written.append(out_file)
    written.append(out_dir / "spectrum.csv")
    write_csv(report, written[-1])
    if report.has_changes:
        written.append(out_dir / "relative_change.png")
        plot_changes(report, written[-1])
    return written


def spectrum_to_folder(source: str | Path, out_dir: str | Path, checkpoint: str | Path | None = None,
                       blocks: Sequence[int] | None = None, rank: int = 16,
                       force: bool = False) -> tuple[SpectrumReport, list[Path]]:
    """:func:`analyse_input` and :func:`write_report` under ``out_dir``; returns the report and the files written.

    Raises:
        OutputExistsError: ``out_dir`` is an input, or holds an earlier report and not ``force``.
        FileNotFoundError, ValueError: as :func:`analyse_input`.
    """
    inputs = [source] + ([checkpoint] if checkpoint else [])
    check_output_dir(out_dir, inputs, produced=["spectrum.csv"], force=force)  # before the slow analysis
    report = analyse_input(source, checkpoint, blocks, rank)
    return report, write_report(report, out_dir)
