"""What tools/train.py and tools/test.py do alike: the shared options and loading the run's config."""
from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction

from .config_check import check_config_types
from .distributed import use_cpu_distributed


def add_runner_arguments(parser: argparse.ArgumentParser, work_dir_help: str) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local-rank``."""
    parser.add_argument("--work-dir", help=f"{work_dir_help} (default: work_dirs/CONFIG_NAME)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config keys: a.b=value")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)


def load_run_config(args: argparse.Namespace) -> Config:
    """The config of ``args.config`` with the command-line overrides, its types checked before any build.

    Sets the work dir and launcher; under a launcher on a machine without GPUs, switches to gloo and a CPU
    DDP wrapper.
    """
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    check_config_types(cfg)  # unknown `type=` names fail now, with the closest registered names
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join(
        "work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.launcher != "none":
        use_cpu_distributed(cfg)
    return cfg
