"""Singular-value spectra of a backbone's SoMA layers, the components SoMA adapts, and how far training moved them
(the library part of tools/analysis/spectrum.py).

Per adapted matrix (q, k and v of a fused qkv separately) and per block, :func:`analyse` gives

* ``||ΔW|| / ||W_adapted||``: the change of the weight relative to the rank-r part SoMA took over at
  initialisation (its r minor components; the r principal ones for ``init="principal"``), and
* ``||ΔW|| / ||W||``: the change relative to the whole pretrained weight,

where ``W`` is the pretrained weight as SoMA split it (residual + scale·BA of the initialised model built from
the config's ``init_cfg`` checkpoint) and ``ΔW`` the trained weight (residual + scale·BA of the checkpoint, or
its plain weight if merged by tools/merge_adapter.py) minus ``W``. With the residual frozen, ``ΔW`` is exactly
the change of the adapter. Everything is computed in float64 (Frobenius norms). :func:`write_report` draws
``spectrum_block{NN}.png`` per block, ``relative_change.png`` and the numbers in ``spectrum.csv``.
"""
from __future__ import annotations

import copy
import csv
import math
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure  # drawn without pyplot: no display, no global backend switch
from mmengine.config import Config

from ..apis.inference import load_trained_weights, read_state_dict
from ..apis.model import build_model
from ..peft import AdapterLayer, adapter_layers, is_adapter_key
from ..peft.base import as_adapter_layer
from ..utils import check_output_dir, load_trusted_checkpoint

__all__ = ["MatrixSpectrum", "SpectrumReport", "analyse", "analyse_input", "analyse_models", "analyse_state_dict",
           "format_table", "spectrum_to_folder", "write_report"]

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_CONFIG_SUFFIXES = (".py", ".json", ".yaml", ".yml")


@dataclass
class MatrixSpectrum:
    """One adapted weight matrix (one q/k/v slice of a fused layer) and its numbers.

    Attributes:
        layer: module name of the layer (``"blocks.8.attn.qkv"``).
        label: the matrix within the block (``"q"``, ``"k"``, ``"v"``, ``"proj"``, ``"fc1"``, ...).
        block: block index, or ``None`` for a layer outside the blocks.
        rank: r of the adapter.
        which: ``"minor"`` or ``"principal"``: the components the adapter took over (``"lora"``: none).
        reference: singular values of the reference weight (pretrained, or the checkpoint's own when no base
            weights are available), descending, float64.
        trained: singular values of the trained weight, or ``None`` without a checkpoint.
        weight_norm: ``||W||_F`` of the reference weight.
        adapted_norm: ``||W_adapted||_F``, the norm of its rank-r part the adapter took over (0 for LoRA).
        delta_norm: ``||W_trained − W||_F``, or ``None`` without a trained checkpoint and base weights.
        shape: (rows, columns) of the matrix.
    """

    layer: str
    label: str
    block: int | None
    rank: int
    which: str
    reference: np.ndarray
    trained: np.ndarray | None = None
    weight_norm: float = 0.0
    adapted_norm: float = 0.0
    delta_norm: float | None = None
    shape: tuple[int, ...] = ()

    @property
    def relative_to_adapted(self) -> float | None:
        """``||ΔW|| / ||W_adapted||`` (NaN when nothing was adapted at init, as for LoRA)."""
        return None if self.delta_norm is None else _ratio(self.delta_norm, self.adapted_norm)

    @property
    def relative_to_weight(self) -> float | None:
        """``||ΔW|| / ||W||``."""
        return None if self.delta_norm is None else _ratio(self.delta_norm, self.weight_norm)

    def adapted_indices(self) -> np.ndarray:
        """Indices (into the descending spectrum) of the components the adapter took over."""
        count = self.reference.size
        if self.which == "principal":
            return np.arange(min(self.rank, count))
        if self.which == "minor":
            return np.arange(max(count - self.rank, 0), count)
        return np.arange(0)


def _ratio(numerator: float, denominator: float) -> float:
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else math.nan
    return numerator / denominator


@dataclass
class SpectrumReport:
    """All matrices analysed, and where the reference weights came from."""

    matrices: list[MatrixSpectrum]
    reference: str  # a sentence: "pretrained weights of <file>" / "the checkpoint's own weights"
    has_changes: bool = False
    notes: list[str] = field(default_factory=list)

    def blocks(self) -> list[int | None]:
        return sorted({m.block for m in self.matrices}, key=lambda b: -1 if b is None else b)

    def block_changes(self) -> dict[int | None, tuple[float, float]]:
        """Per block: (``||ΔW|| / ||W_adapted||``, ``||ΔW|| / ||W||``) over all its adapted matrices together."""
        changes = {}
        for block in self.blocks():
            members = [m for m in self.matrices if m.block == block and m.delta_norm is not None]
            if not members:
                continue
            delta = math.sqrt(sum(m.delta_norm ** 2 for m in members))
            adapted = math.sqrt(sum(m.adapted_norm ** 2 for m in members))
            weight = math.sqrt(sum(m.weight_norm ** 2 for m in members))
            changes[block] = (_ratio(delta, adapted), _ratio(delta, weight))
        return changes


# ---------------------------------------------------------------------------------------------- weights
def _label(layer: str, index: int, splits: int) -> str:
    leaf = layer.rsplit(".", 1)[-1]
    if splits == 1:
        return leaf
    if splits == 3 and leaf == "qkv":
        return "qkv"[index]
    return f"{leaf}[{index}]"


def _block_of(name: str) -> int | None:
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else None


@torch.no_grad()
def _adapter_parts(layer: AdapterLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen weight (SoMA's residual) and the adapter's change (``scale·BA`` for SoMA) of an adapted layer, both
    exact in float64."""
    exact = copy.deepcopy(layer).to(torch.float64)  # the layer's own formula, in float64 arithmetic
    return layer.frozen_weight(torch.float64), exact.delta_weight()


@torch.no_grad()
def _full_weight(module: torch.nn.Module) -> torch.Tensor:
    """The weight a layer applies, in float64: frozen weight + adapter change when adapted, else the plain one."""
    layer = as_adapter_layer(module)
    if layer is not None:
        frozen, delta = _adapter_parts(layer)
        return frozen + delta
    return module.weight.detach().to(torch.float64)


def _svdvals(weight: torch.Tensor) -> np.ndarray:
    return torch.linalg.svdvals(weight).numpy()


def _selected(names: Iterable[str], blocks: Sequence[int] | None) -> list[str]:
    return [n for n in names if blocks is None or _block_of(n) in blocks]


def analyse_models(reference: torch.nn.Module | None, trained: torch.nn.Module | None,
                   layout: torch.nn.Module, blocks: Sequence[int] | None = None) -> list[MatrixSpectrum]:
    """Spectra (and changes, given both models) of every SoMA layer of ``layout`` (by module name).

    Args:
        reference: the SoMA-initialised pretrained model, or ``None`` (then the trained one is shown).
        trained: the trained model (SoMA layers, or plain layers of a merged checkpoint), or ``None``.
        layout: the model whose SoMA layers say which matrices to analyse, with rank, slices and init.
        blocks: only these block indices (default: all).
    """
    matrices = []
    layers = adapter_layers(layout)
    for name in _selected(layers, blocks):
        spec = layers[name]
        splits = spec.adapted_matrices
        rows = spec.base_layer.weight.shape[0] // splits
        init = getattr(spec, "init", None)  # SoMA's split: the minor or principal components it took over
        which = init if init in ("minor", "principal") else "none"
        ref_weight = adapted = None
        if reference is not None:
            residual, adapted = _adapter_parts(as_adapter_layer(reference.get_submodule(name)))
            ref_weight = residual + adapted
        new_weight = _full_weight(trained.get_submodule(name)) if trained is not None else None
        for index in range(splits):
            part = slice(index * rows, (index + 1) * rows)
            shown = ref_weight[part] if ref_weight is not None else new_weight[part]
            values = _svdvals(shown)
            matrix = MatrixSpectrum(layer=name, label=_label(name, index, splits), block=_block_of(name),
                                    rank=getattr(spec, "r", 0), which=which, reference=values,
                                    weight_norm=float(np.sqrt((values ** 2).sum())), shape=tuple(shown.shape))
            # The adapted part's norm: of the adapter product itself when the initial split is known, else of
            # the spectrum's r minor/principal values (what SoMA's SVD split would take).
            if adapted is not None:
                matrix.adapted_norm = float(torch.linalg.matrix_norm(adapted[part]))
            else:
                matrix.adapted_norm = float(np.sqrt((values[matrix.adapted_indices()] ** 2).sum()))
            if new_weight is not None and ref_weight is not None:
                matrix.trained = _svdvals(new_weight[part])
                matrix.delta_norm = float(torch.linalg.matrix_norm(new_weight[part] - ref_weight[part]))
            matrices.append(matrix)
    return matrices


def analyse_state_dict(state: dict[str, torch.Tensor], rank: int, which: str = "minor",
                       blocks: Sequence[int] | None = None) -> list[MatrixSpectrum]:
    """Spectra of the block linear weights of a plain (timm-layout) state dict; a fused qkv as 3 matrices."""
    matrices = []
    names = [k for k, v in state.items() if k.endswith(".weight") and v.ndim == 2 and _block_of(k) is not None
             and "norm" not in k]
    for key in _selected(names, blocks):
        layer = key[: -len(".weight")]
        weight = state[key].to(torch.float64)
        splits = 3 if layer.endswith("qkv") and weight.shape[0] % 3 == 0 else 1
        rows = weight.shape[0] // splits
        for index in range(splits):
            part = weight[index * rows:(index + 1) * rows]
            values = _svdvals(part)
            matrix = MatrixSpectrum(layer=layer, label=_label(layer, index, splits), block=_block_of(layer),
                                    rank=min(rank, values.size), which=which, reference=values,
                                    weight_norm=float(np.sqrt((values ** 2).sum())), shape=tuple(part.shape))
            matrix.adapted_norm = float(np.sqrt((values[matrix.adapted_indices()] ** 2).sum()))
            matrices.append(matrix)
    if not matrices:
        raise ValueError("the weight file has no 2-D `blocks.N.*.weight` matrices; is it a ViT backbone state dict?")
    return matrices


def _init_cfg_checkpoint(cfg: Config) -> str | None:
    init_cfg = cfg.model.get("backbone", {}).get("init_cfg") or {}
    return init_cfg.get("checkpoint") if init_cfg.get("type") == "Pretrained" else None


def analyse(config: str | Path, checkpoint: str | Path | None = None,
            blocks: Sequence[int] | None = None) -> SpectrumReport:
    """The spectra of a config's SoMA layers: pretrained (from its ``init_cfg``) and, given ``checkpoint``,
    trained, with the relative changes.

    Raises:
        FileNotFoundError: a missing config or checkpoint.
        ValueError: the config has no SoMA layers, or neither base weights nor a checkpoint to analyse.
    """
    for path, what in ((config, "config"), (checkpoint, "checkpoint")):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{what} file '{path}' does not exist.")
    cfg = Config.fromfile(str(config))
    base = _init_cfg_checkpoint(cfg)
    notes = []
    if base is not None and not Path(base).is_file():
        if checkpoint is None:
            raise FileNotFoundError(f"the base weights '{base}' of {config} (model.backbone.init_cfg) do not exist; "
                                    "convert them with tools/convert_models/ or pass a trained --checkpoint.")
        notes.append(f"base weights '{base}' not found: showing the checkpoint's own weights, no changes.")
        base = None
    if base is None and checkpoint is None:
        raise ValueError(f"{config} has no `model.backbone.init_cfg` checkpoint, so there are no pretrained "
                         "weights to analyse; pass a trained --checkpoint (its own weights are then shown).")
    reference = build_model(str(config), pretrained=True) if base is not None else None
    trained = None
    if checkpoint is not None:
        trained = build_model(str(config), pretrained=False)
        layout = copy.deepcopy(trained)  # keeps the SoMA layout even when a merged checkpoint unwraps it
        load_trained_weights(trained, checkpoint)
    else:
        layout = reference
    if not adapter_layers(layout):
        raise ValueError(f"the model of {config} has no adapted layers (`model.backbone.peft` is None); analyse a "
                         "config with `peft=dict(type='SoMA', ...)`, or a plain weight file with --rank.")
    if base is None:
        notes.append("no base weights (config has no init_cfg checkpoint): spectra of the checkpoint's own weights "
                     "(residual + scale·BA), no changes.")
        matrices = analyse_models(None, trained, layout, blocks)
        return SpectrumReport(matrices, reference=f"the weights of {checkpoint}", notes=notes)
    matrices = analyse_models(reference, trained, layout, blocks)
    return SpectrumReport(matrices, reference=f"pretrained weights of {base}", has_changes=trained is not None,
                          notes=notes)


def analyse_input(source: str | Path, checkpoint: str | Path | None = None, blocks: Sequence[int] | None = None,
                  rank: int = 16) -> SpectrumReport:
    """:func:`analyse` for a config, a training checkpoint (its stored config) or a plain weight file."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"'{source}' does not exist; give a config file or a checkpoint.")
    if source.suffix in _CONFIG_SUFFIXES:
        return analyse(source, checkpoint, blocks)
    if checkpoint is not None:
        raise ValueError(f"'{source}' is not a config (.py); --checkpoint goes with a config: "
                         "spectrum.py CONFIG --checkpoint CKPT --out DIR.")
    loaded = load_trusted_checkpoint(source)
    meta = loaded.get("meta") if isinstance(loaded, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("cfg"), str):  # mmengine's Runner stores the config text
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config_from_checkpoint.py"
            Config.fromstring(meta["cfg"], ".py").dump(str(config))
            return analyse(config, source, blocks)
    state, _ = read_state_dict(source)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"'{source}' is neither a training checkpoint nor a state dict of tensors.")
    if any(is_adapter_key(k) for k in state):
        raise ValueError(f"'{source}' holds adapters but no config; pass the config it was trained with: "
                         f"spectrum.py CONFIG --checkpoint {source} --out DIR.")
    matrices = analyse_state_dict(state, rank, blocks=blocks)
    return SpectrumReport(matrices, reference=f"the weights of {source}",
                          notes=[f"plain weight file: marking the r={rank} minor components SoMA would adapt."])


# ---------------------------------------------------------------------------------------------- output
def _block_name(block: int | None) -> str:
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
        line = (f"{_block_name(block):>5}  {len(members):>8}  {max(m.reference[0] for m in members):>9.3g}  "
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
        out_file = out_dir / f"spectrum_block{_block_name(block)}.png"
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
