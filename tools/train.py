"""Train a segmentor or detector from a config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp] [--cfg-options key=value ...]
    bash tools/dist_train.sh CONFIG GPUS [same options]
"""
from __future__ import annotations

import argparse

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
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    cfg.resume = args.resume
    Runner.from_cfg(cfg).train()


if __name__ == "__main__":
    main()
