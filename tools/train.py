"""Train a segmentor or detector from a config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume | --overwrite] [--amp] [--cfg-options key=value ...]
    bash tools/dist_train.sh CONFIG GPUS [same options]

A work dir that holds checkpoints is refused unless the run continues them (``--resume``) or replaces them
(``--overwrite``); a running training locks its work dir against a second one (soma/utils/work_dir.py).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import re
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from soma.engine import build_runner
from soma.utils import add_runner_arguments, claim_work_dir, exit_on_user_error, load_run_config
from soma.utils.work_dir import is_main_launch_process


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a SoMA model.")
    parser.add_argument("config", help="config file")
    parser.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in the work dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the checkpoints of an earlier run in the work dir and start anew")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision")
    add_runner_arguments(parser, "where logs and checkpoints go")
    return parser.parse_args()


@exit_on_user_error
def main() -> None:
    args = parse_args()
    cfg = load_run_config(args)
    # Rank 0 (or the only process) owns the work dir; the others of a distributed run share it.
    claim = claim_work_dir(cfg.work_dir, resume=args.resume, overwrite=args.overwrite) \
        if is_main_launch_process() else contextlib.nullcontext()
    with claim:
        cfg.resume = args.resume
        if args.resume and not cfg.get("load_from"):
            cfg.load_from = latest_checkpoint(cfg.work_dir)
        runner = build_runner(cfg)  # strict load_from/--resume loading
        runner.register_hook(dict(type="RandomStateHook"))  # resumed runs continue the same random stream
        runner.register_hook(dict(type="LabelSizeCheckHook"))
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
