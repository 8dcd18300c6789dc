"""Trainable backbone parameters of every adapter method, frozen and full fine-tuning, as a markdown table.

    python tools/benchmark/trainable_params.py                 # DINOv2-L, the G->CBM configs
    python tools/benchmark/trainable_params.py --arch tiny     # the tests' 4-block arch (adapted blocks scaled)

Each row is the backbone of a GTA5 -> Cityscapes/BDD100K/Mapillary config (configs/*/*_dinov2-l_gta2cbm-512.py:
frozen, full fine-tuning, SoMA, PiSSA, LoRA, DoRA, HF peft LoRA, Rein, and any method config added there), built on the
meta device: shapes only, no memory, no weights read. Counts are of the backbone alone (the decode head trains in
every setting). "adapters" counts the methods' own tensors (A, B, magnitudes, tokens), "biases" the trained
tensors of the adapted layers' base layers, "adapted matrices" counts a fused q/k/v adapted slice by slice as 3.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]  # the repository (an editable install)
CONFIG_GLOB = "configs/*/*_dinov2-l_gta2cbm-512.py"  # configs/soma and the other methods' folders (configs/rein)
FIRST = ("frozen", "full")  # the two reference rows, then the methods by name
LARGE_DEPTH = 24


def method_configs() -> dict[str, Path]:
    """``{row name: config}``: the name is the config file's prefix (``soma``, ``dora``, ``hf-lora``, ...)."""
    found = {p.name.split("_")[0]: p for p in sorted(REPO.glob(CONFIG_GLOB))}
    order = [n for n in FIRST if n in found] + sorted(n for n in found if n not in FIRST)
    return {name: found[name] for name in order}


def build_backbone(config: Path, arch: str) -> torch.nn.Module:
    """The config's backbone on the meta device; ``arch`` other than large scales the adapted blocks."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    from soma import register_all_modules

    register_all_modules()

    backbone = Config.fromfile(str(config)).model.backbone
    backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope("mmseg"), torch.device("meta"):
        if arch != "large":
            backbone.update(arch=arch, out_indices=None)  # the arch's default output blocks
            peft = backbone.get("peft")
            if peft is not None and peft.get("start_block") is not None:  # blocks 8-23 of 24: the same fraction
                depth = len(MODELS.build(dict(backbone, peft=None)).vit.blocks)
                peft.start_block = round(peft.start_block * depth / LARGE_DEPTH)
        return MODELS.build(backbone)


def peft_summary(backbone: torch.nn.Module) -> str:
    """The method and its main options, e.g. ``SoMA r=16 init=minor`` or ``HFPeft LoraConfig r=16``."""
    method, config = backbone.peft_method, backbone.peft_config
    if method is None:
        return "-"
    options = config.to_dict()
    if "config" in options:  # HFPeft: peft's own config
        inner = dict(options["config"])
        return f"{method.name} {inner.pop('type')} " + " ".join(f"{k}={v}" for k, v in inner.items())
    shown = [f"{k}={options[k]}" for k in ("r", "init", "num_tokens", "token_rank") if k in options]
    return " ".join([method.name, *shown])


def table(arch: str = "large") -> str:
    """The markdown table of every method config (see the module docstring)."""
    from soma.peft import trainable_parameters

    rows = ["| method | adapter | trainable | share of backbone | adapters | biases | adapted matrices |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for name, config in method_configs().items():
        backbone = build_backbone(config, arch)
        summary = trainable_parameters(backbone)
        share = 100.0 * summary.trainable / summary.total
        rows.append(f"| {name} | {peft_summary(backbone)} | {summary.trainable:,} | {share:.2f}% | "
                    f"{summary.adapter:,} | {summary.bias:,} | {summary.adapted_layers} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """tools/benchmark/trainable_params.py: print the table."""
    parser = argparse.ArgumentParser(description="Trainable backbone parameters of every adapter method, as a "
                                                 "markdown table.")
    parser.add_argument("--arch", default="large", help="backbone arch (default: large, as the configs)")
    args = parser.parse_args(argv)
    print(f"Trainable backbone parameters, DINOv2-{args.arch} ({CONFIG_GLOB}):\n")
    print(table(args.arch))
