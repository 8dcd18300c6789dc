"""Train a segmentor or detector from a config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp] [--cfg-options key=value ...]
    bash tools/dist_train.sh CONFIG GPUS [same options]
"""
from __future__ import annotations

import argparse

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from soma.utils import add_runner_arguments, load_run_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a SoMA model.")
    parser.add_argument("config", help="config file")
    parser.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in the work dir")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision")
    add_runner_arguments(parser, "where logs and checkpoints go")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_run_config(args)
    cfg.resume = args.resume
    runner = Runner.from_cfg(cfg)
    runner.register_hook(dict(type="RandomStateHook"))  # resumed runs continue the same random stream
    try:
        runner.train()
    except torch.OutOfMemoryError as error:
        raise SystemExit(out_of_memory_message(cfg, error)) from None


def out_of_memory_message(cfg: Config, error: Exception) -> str:
    """What to change when training runs out of accelerator memory, with this config's current values."""
    backbone = cfg.model.get("backbone", {})
    crop = cfg.model.get("data_preprocessor", {}).get("size")
    return (f"out of GPU memory while training ({str(error).splitlines()[0]}). Lower the memory use, e.g. "
            f"--cfg-options train_dataloader.batch_size=<smaller than {cfg.train_dataloader.batch_size}> "
            f"(crop size {crop}: a smaller crop needs a matching model.data_preprocessor.size), "
            f"model.backbone.with_cp=True (gradient checkpointing of the trained blocks, now "
            f"{backbone.get('with_cp', False)}), or --amp (mixed precision).")


if __name__ == "__main__":
    main()
