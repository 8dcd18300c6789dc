"""Training from a config with mmengine's Runner: what ``tools/train.py`` runs.

    python tools/train.py CONFIG [--work-dir DIR] [--seed N] [--resume | --overwrite] [--amp] [--cfg-options ...]
    bash tools/dist_train.sh CONFIG GPUS [same options]

A work dir that holds checkpoints is refused unless the run continues them (``--resume``) or replaces them
(``--overwrite``); a running training locks its work dir against a second one (soma/utils/work_dir.py).
:func:`main` is the command line; :func:`latest_checkpoint` and :func:`resolve_load_from` decide which
checkpoint a run starts from, the only file it unpickles fully (:func:`soma.utils.runtime.setup_runtime`).
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import re
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from soma.utils.runtime import setup_runtime
from soma.engine import build_runner
from soma.config import add_runner_arguments, load_run_config
from soma.utils import ConfigError, claim_work_dir, exit_on_user_error
from soma.utils.distributed import process_group_destroyed_at_exit
from soma.utils.work_dir import is_main_launch_process
from soma.utils.cli import random_seed

__all__ = ["main", "parse_args", "latest_checkpoint", "resolve_load_from", "out_of_memory_message"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """tools/train.py's command line (``argv``, default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description="Train a SoMA model.")
    parser.add_argument("config", help="config file")
    parser.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in the work dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the checkpoints of an earlier run in the work dir and start anew")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision")
    parser.add_argument("--seed", type=random_seed,
                        help="random seed of the run (sets `randomness.seed`; checkpoints and tools/test.py's "
                             "metrics.json record it)")
    add_runner_arguments(parser, "where logs and checkpoints go")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """tools/train.py: train ``CONFIG`` with the options in ``argv`` (default ``sys.argv[1:]``); a user error ends
    the program with ``error: <message>``."""
    args = parse_args(argv)
    with process_group_destroyed_at_exit():
        train_from_args(args)


def train_from_args(args: argparse.Namespace) -> None:
    """Load the run's config, claim its work dir and train (tools/train.py's work once its options are read)."""
    cfg = load_run_config(args)
    # Rank 0 (or the only process) owns the work dir; the others of a distributed run share it.
    claim = claim_work_dir(cfg.work_dir, resume=args.resume, overwrite=args.overwrite) \
        if is_main_launch_process() else contextlib.nullcontext()
    with claim:
        cfg.resume = args.resume
        if args.resume and "load_from" not in (args.cfg_options or {}):
            # Continue this run; a config's own `load_from` (a second stage's starting point) only starts a fresh
            # run.
            latest = latest_checkpoint(cfg.work_dir)
            if latest is not None:
                cfg.load_from = latest
            elif cfg.get("load_from"):
                cfg.resume = False
        if cfg.get("load_from") and not cfg.resume:
            cfg.load_from = resolve_load_from(cfg.load_from)
        setup_runtime(trusted_checkpoints=[cfg.get("load_from")])  # only this file is unpickled fully
        runner = build_runner(cfg)  # the config's runner and hooks, nothing added here
        try:
            runner.train()
        except torch.OutOfMemoryError as error:
            raise SystemExit(out_of_memory_message(cfg, error)) from None


def latest_checkpoint(work_dir: str) -> str | None:
    """The checkpoint ``--resume`` continues from: the one ``last_checkpoint`` names if it is there, else the
    highest ``iter_N.pth``/``epoch_N.pth`` in ``work_dir`` (``last_checkpoint`` left empty by a kill, or naming
    a deleted file), else ``None`` (a fresh start, as mmengine does)."""
    work = Path(work_dir)
    pointer = work / "last_checkpoint"
    named = pointer.read_text().strip() if pointer.is_file() else ""
    if named and Path(named).is_file():
        return named
    found = [(int(match.group(2)), path) for path in work.glob("*.pth")
             if (match := re.fullmatch(r"(iter|epoch)_(\d+)\.pth", path.name))]
    if not found:
        return None
    latest = str(max(found)[1])
    print_log(f"{pointer} {'names the missing ' + repr(named) if named else 'is missing or empty'}; resuming from "
              f"{latest}, the latest checkpoint in {work}.", logger="current", level=logging.WARNING)
    return latest


def resolve_load_from(load_from: str) -> str:
    """``load_from`` itself, or the one file its glob pattern matches (e.g. a first stage's
    ``best_mean_mIoU_iter_*.pth``, whose iteration is not known in advance).

    Raises:
        ConfigError: the pattern matches no file, or several.
    """
    if not glob.has_magic(load_from):
        return load_from
    found = sorted(glob.glob(load_from))
    if not found:
        raise ConfigError(
            f"`load_from` = '{load_from}' matches no file. This config starts from the checkpoint of another run "
            "(see the config's header): train that run first, or pass --cfg-options load_from=PATH.")
    if len(found) > 1:
        raise ConfigError(f"`load_from` = '{load_from}' matches {len(found)} files ({found}); pick one with "
                         "--cfg-options load_from=PATH.")
    print_log(f"load_from: {found[0]} (the one match of '{load_from}')", logger="current")
    return found[0]


def out_of_memory_message(cfg: Config, error: Exception) -> str:
    """What to change when training runs out of accelerator memory, with this config's current values."""
    backbone = cfg.model.get("backbone", {})
    crop = cfg.model.get("data_preprocessor", {}).get("size")
    return (f"out of GPU memory while training ({str(error).splitlines()[0]}). Lower the memory use, e.g. "
            f"--cfg-options train_dataloader.batch_size=<smaller than {cfg.train_dataloader.batch_size}> "
            f"(crop size {crop}: a smaller crop needs a matching model.data_preprocessor.size), "
            f"model.backbone.with_cp=True (gradient checkpointing of the trained blocks, now "
            f"{backbone.get('with_cp', False)}), or --amp (mixed precision).")

