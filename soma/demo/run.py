"""The SoMA demo on CPU: generate scenes → pretrain a small ViT → fine-tune → evaluate on shifted styles
(the library part of tools/demo/run.py).

Everything runs through the same pieces as the real benchmarks: the registered dataset and backbone, the
Mask2Former segmentor, ``tools/train.py`` (mmengine's Runner) and ``tools/test.sh`` with the per-domain metric,
run from the repository (soma is installed from it in editable mode by tools/setup.sh). Only sizes differ.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .figure import save_predictions
from .pretrain import pretrain
from .scenes import STYLES, write_dataset

__all__ = ["REPO", "VARIANTS", "Variant", "run_demo"]

REPO = Path(__file__).resolve().parents[2]  # the checkout: the demo's configs and tools/train.py live there


@dataclass(frozen=True)
class Variant:
    name: str
    config: str
    description: str
    validates: bool = False  # the config validates during training (its val_dataloader needs the data roots too)


CONFIG_DIR = "configs/demo"
VARIANTS = {
    "frozen": Variant("frozen", f"{CONFIG_DIR}/frozen_dinov2-demo_scenes-64.py", "frozen backbone"),
    "full": Variant("full", f"{CONFIG_DIR}/full_dinov2-demo_scenes-64.py", "full fine-tuning"),
    "lora": Variant("lora", f"{CONFIG_DIR}/lora_dinov2-demo_scenes-64.py", "LoRA (blocks 3-5)"),
    "pissa": Variant("pissa", f"{CONFIG_DIR}/pissa_dinov2-demo_scenes-64.py", "PiSSA (principal, blocks 3-5)"),
    "soma": Variant("soma", f"{CONFIG_DIR}/soma_dinov2-demo_scenes-64.py", "SoMA (minor, blocks 3-5)"),
    # Not a baseline: SoMA with validation during training and an EMA of the weights (the recipes' whole cycle).
    "soma_ema": Variant("soma_ema", f"{CONFIG_DIR}/soma-ema_dinov2-demo_scenes-64.py",
                        "SoMA, validated, EMA weights", validates=True),
}
COMPARED = ("frozen", "full", "lora", "pissa", "soma")  # what --all trains side by side


def data_options(data_root: Path, validates: bool = False) -> list[str]:
    """``--cfg-options`` that point a demo config's datasets at ``data_root``."""
    options = [f"train_dataloader.dataset.data_root={data_root}/source"]
    for loader in ("test_dataloader", "val_dataloader") if validates else ("test_dataloader",):
        options += [f"{loader}.dataset.datasets.{index}.data_root={data_root}/{style}"
                    for index, style in enumerate(STYLES)]
    return options


def run_tool(command: list[str], log: Path) -> None:
    """Run a tool, its output going to ``log``; on failure show the end of the log and stop."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:
        result = subprocess.run(command, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=str(REPO), PYTHON=sys.executable))
    if result.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"{' '.join(command)} failed (exit {result.returncode}); end of {log}:\n{tail}")


def train_and_test(variant: Variant, data_root: Path, pretrained: Path, work_dir: Path,
                   iters: int | None = None, seed: int | None = None) -> dict:
    """Train one variant with tools/train.py (``--seed seed`` if given; else the config's) and evaluate it with
    tools/test.sh; returns its metrics."""
    options = data_options(data_root, variant.validates) + [f"model.backbone.init_cfg.checkpoint={pretrained}"]
    if iters:
        # The schedules (PolyLR, weight-decay cosine) end with training, as in the configs.
        options += [f"train_cfg.max_iters={iters}", f"default_hooks.checkpoint.interval={iters}",
                    f"param_scheduler.0.end={iters}", f"param_scheduler.1.end={iters}"]
    python = sys.executable
    # Each demo run starts its variants anew: --overwrite replaces the checkpoints of an earlier demo run.
    seed_option = [] if seed is None else ["--seed", str(seed)]
    run_tool([python, "tools/train.py", variant.config, "--work-dir", str(work_dir), "--overwrite", *seed_option,
              "--cfg-options", *options],
             work_dir / "train.out")
    checkpoint = (work_dir / "last_checkpoint").read_text().strip()
    # --force: the results of an earlier demo run are of the checkpoint that --overwrite just replaced.
    run_tool(["bash", "tools/test.sh", variant.config, checkpoint, "1", "--work-dir", str(work_dir), "--force",
              "--cfg-options", *options], work_dir / "test.out")
    return json.loads((work_dir / "metrics.json").read_text())


def config_iterations(config: str) -> int:
    """``train_cfg.max_iters`` of a demo config."""
    from mmengine.config import Config

    return Config.fromfile(str(REPO / config)).train_cfg.max_iters


def trainable_fraction(config: str) -> float:
    """Trainable share of the backbone's parameters for ``config`` (built without weights)."""
    from mmengine.config import Config
    from mmseg.registry import MODELS

    cfg = Config.fromfile(str(REPO / config))
    cfg.model.backbone.init_cfg = None
    backbone = MODELS.build(cfg.model.backbone)
    total = sum(p.numel() for p in backbone.parameters())
    return sum(p.numel() for p in backbone.parameters() if p.requires_grad) / total


def results_table(results: dict[str, dict], fractions: dict[str, float]) -> str:
    """Markdown table: per-domain mIoU, the target mean and the trainable share of each variant."""
    header = ["variant", "trainable", *STYLES, "target mean"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in results.items():
        cells = [VARIANTS[name].description, f"{100 * fractions[name]:.1f}%"]
        cells += [f"{metrics[f'{style}/mIoU']:.1f}" for style in STYLES] + [f"{metrics['mean/mIoU']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def observations(results: dict[str, dict]) -> list[str]:
    """What the numbers show, relative to the frozen backbone when it was trained; no claims beyond them."""
    lines = []
    baseline = results.get("frozen")
    for name, metrics in results.items():
        source, target = metrics["source/mIoU"], metrics["mean/mIoU"]
        text = f"{VARIANTS[name].description}: source {source:.1f} mIoU, shifted styles {target:.1f} on average"
        if baseline is not None and name != "frozen":
            source_gain = source - baseline["source/mIoU"]
            target_gain = target - baseline["mean/mIoU"]
            text += f" ({source_gain:+.1f} source, {target_gain:+.1f} shifted vs the frozen backbone)"
        lines.append(text + ".")
    if len(results) > 1:
        lines.append("One seed at 64×64: differences of a few mIoU between variants are within run-to-run noise.")
    return lines


def run_demo(work_dir: str | Path, data_root: str | Path, pretrained: str | Path, all_variants: bool = False,
             iters: int | None = None, pretrain_steps: int = 300, num_train: int = 400, num_val: int = 100,
             variants: list[str] | None = None) -> Path:
    """Generate the scenes, pretrain the demo ViT (both cached), train and test SoMA (with ``all_variants`` also
    the frozen, full fine-tuning, LoRA and PiSSA baselines; ``variants`` names others); prints the progress and
    the summary table.

    Args:
        work_dir: one folder per variant goes here, with ``summary.md`` and ``predictions.png``.
        data_root: where the generated scenes go (reused when written with the same settings).
        pretrained: the demo ViT's weights (made on the first run, then reused).
        iters: fine-tuning iterations (default: the configs').

    Returns:
        The path of ``summary.md``.
    """
    start = time.perf_counter()
    work_root, data_root, pretrained = Path(work_dir), Path(data_root), Path(pretrained)
    stamp = time.perf_counter()
    write_dataset(data_root, num_train=num_train, num_val=num_val)
    print(f"[demo] scenes ready in {data_root} ({time.perf_counter() - stamp:.0f} s)", flush=True)
    stamp = time.perf_counter()
    pretrain(pretrained, steps=pretrain_steps)
    print(f"[demo] pretrained ViT ready: {pretrained} ({time.perf_counter() - stamp:.0f} s)", flush=True)
    names = list(COMPARED) if all_variants else list(variants or ["soma"])
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown demo variant(s) {unknown}: choose from {sorted(VARIANTS)}")
    results, fractions = {}, {}
    for name in names:
        stamp = time.perf_counter()
        results[name] = train_and_test(VARIANTS[name], data_root, pretrained, work_root / name, iters)
        fractions[name] = trainable_fraction(VARIANTS[name].config)
        print(f"[demo] {VARIANTS[name].description}: trained and evaluated in {time.perf_counter() - stamp:.0f} s "
              f"(logs in {work_root / name})", flush=True)
    table = results_table(results, fractions)
    notes = observations(results)
    shown = "soma" if "soma" in names else names[0]
    figure = save_predictions(str(REPO / VARIANTS[shown].config), work_root / shown, data_root,
                              work_root / "predictions.png")
    elapsed = time.perf_counter() - start
    iterations = iters or config_iterations(VARIANTS[shown].config)
    summary = "\n".join([f"mIoU (%) on the demo scenes, trained on the source style ({iterations} iterations); "
                         "per-class IoU is in each variant's test log.", "", table, "",
                         *[f"- {line}" for line in notes], "", f"Predictions: {figure}",
                         f"Demo finished in {elapsed:.0f} s."])
    summary_file = work_root / "summary.md"
    summary_file.write_text(summary + "\n")
    print("\n" + summary, flush=True)
    return summary_file
