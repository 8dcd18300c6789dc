"""Evaluating a checkpoint on the test set(s) of a config with mmengine's Runner: what ``tools/test.py`` runs.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--tta] [--show-dir DIR] [--cfg-options ...]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

The checkpoint is loaded strictly: one that does not fit the config's model (another architecture, rank or
class count; an adapter-only or merged file) is refused with the likely cause (soma/utils/strict_loading.py).
``--non-strict`` loads only the tensors that fit and lists the rest. It is the only file the run unpickles
fully (:func:`soma.apis.runtime.setup_runtime`).
"""
from __future__ import annotations

import argparse
import json
import os.path as osp

from mmengine.config import Config
from mmengine.dist import is_main_process

from soma.apis.runtime import setup_runtime
from soma.engine import build_runner
from soma.utils import ConfigError, add_runner_arguments, exit_on_user_error, load_run_config, write_text_atomic
from soma.utils.dataset_config import leaf_datasets

__all__ = ["main", "parse_args", "as_number", "format_metrics", "evaluation_resolutions", "record_test_setting"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """tools/test.py's command line (``argv``, default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description="Evaluate a SoMA checkpoint.")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint written by tools/train.py (or merged by the adapter tools)")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation of the config (`tta_model`)")
    parser.add_argument("--show-dir",
                        help="save drawn predictions (ground truth | prediction) as PNGs under this folder")
    add_runner_arguments(parser, "where logs and the metrics JSON go")
    return parser.parse_args(argv)


def as_number(value: object) -> object:
    """Metrics come as numpy scalars; JSON and the table want Python numbers."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def format_metrics(metrics: dict[str, float]) -> str:
    """A two-column table of the metrics, one per line."""
    width = max((len(k) for k in metrics), default=6)
    lines = [f"{'metric':{width}s}  value", f"{'-' * width}  ------"]
    lines += [f"{k:{width}s}  {v:.2f}" if isinstance(v, float) else f"{k:{width}s}  {v}" for k, v in metrics.items()]
    return "\n".join(lines)


def evaluation_resolutions(cfg: Config) -> list:
    """The ``Resize`` scales of the test pipeline(s), for the results record (numbers depend on them)."""
    scales = []
    for member in leaf_datasets(cfg.test_dataloader.dataset):
        for transform in member.get("pipeline", cfg.get("test_pipeline", [])):
            if transform.get("type") == "Resize":
                scales.append(transform.get("scale"))
    return scales or ["original"]


def record_test_setting(cfg: Config, tta: bool) -> None:
    """Per-domain metrics write a per-class JSON next to metrics.json, recording test resolution and TTA."""
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    for evaluator in evaluators:
        if evaluator.get("type") in ("DomainIoUMetric", "DomainVOCMetric"):  # per-domain mIoU or mAP
            evaluator.setdefault("output_file", osp.join(cfg.work_dir, "per_class.json"))
            evaluator.setdefault("extra_info", dict(test_resolution=evaluation_resolutions(cfg), tta=tta))


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """tools/test.py: evaluate ``CHECKPOINT`` on ``CONFIG``'s test set(s) with the options in ``argv`` (default
    ``sys.argv[1:]``), print the metrics and write ``metrics.json`` to the work dir."""
    args = parse_args(argv)
    cfg = load_run_config(args)
    cfg.load_from = args.checkpoint
    if args.tta:
        if "tta_pipeline" not in cfg or "tta_model" not in cfg:
            raise ConfigError(f"--tta needs `tta_pipeline` and `tta_model` in {args.config}; this config has none.")
        for member in leaf_datasets(cfg.test_dataloader.dataset):  # a ConcatDataset of test sets, or one
            member.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.show_dir:
        visualization = cfg.default_hooks.visualization
        visualization.update(draw=True, interval=1)
        cfg.visualizer.save_dir = args.show_dir
    record_test_setting(cfg, tta=args.tta)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint '{args.checkpoint}' does not exist.")
    setup_runtime(trusted_checkpoints=[args.checkpoint])  # only the named checkpoint is unpickled fully
    runner = build_runner(cfg)  # strict loading of the checkpoint
    runner.register_hook(dict(type="LabelSizeCheckHook"))
    metrics = {k: as_number(v) for k, v in runner.test().items()}
    if is_main_process():
        print(format_metrics(metrics))
        write_text_atomic(osp.join(cfg.work_dir, "metrics.json"), json.dumps(
            dict(metrics, checkpoint=args.checkpoint, tta=args.tta, test_resolution=evaluation_resolutions(cfg)),
            indent=2))

