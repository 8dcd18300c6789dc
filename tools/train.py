"""Train a segmentor or detector from a config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp] [--cfg-options key=value ...]
    bash tools/dist_train.sh CONFIG GPUS [same options]
"""
from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from soma.utils import check_config_types, use_cpu_distributed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a SoMA model.")
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/CONFIG_NAME)")
    parser.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in the work dir")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: a.b=value")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    check_config_types(cfg)  # unknown `type=` names fail now, with the closest registered names
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join(
        "work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    cfg.resume = args.resume
    if args.launcher != "none":
        use_cpu_distributed(cfg)
    Runner.from_cfg(cfg).train()


if __name__ == "__main__":
    main()
