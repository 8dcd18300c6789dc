"""Evaluating a checkpoint on the test set(s) of a config with mmengine's Runner: what ``tools/test.py`` runs.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--tta] [--show-dir DIR] [--force] [--cfg-options ...]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

The checkpoint is loaded strictly: one that does not fit the config's model (another architecture, rank or
class count; an adapter-only or merged file) is refused with the likely cause (soma/weights).
``--non-strict`` loads only the tensors that fit and lists the rest. It is the only file the run unpickles
fully (:func:`soma.utils.runtime.setup_runtime`).

The results (``metrics.json``, the per-domain metrics' ``per_class.json``) go to the work dir; ``metrics.json``
also records the config, and the seed and config of the training run (:func:`training_record`); a work dir that
already holds results of an earlier test is refused unless ``--force`` (:func:`check_earlier_results`).
"""
from __future__ import annotations

import argparse
import json
import os.path as osp

from mmengine.config import Config
from mmengine.dist import is_main_process

from soma.utils.runtime import setup_runtime
from soma.engine import build_runner
from soma.config import add_runner_arguments, load_run_config
from soma.utils import ConfigError, OutputExistsError, exit_on_user_error, write_text_atomic
from soma.utils.distributed import process_group_destroyed_at_exit
from soma.config.datasets import leaf_datasets

__all__ = ["main", "parse_args", "as_number", "format_metrics", "evaluation_resolutions", "record_test_setting",
           "result_files", "check_earlier_results", "training_record"]

METRICS_NAME = "metrics.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """tools/test.py's command line (``argv``, default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description="Evaluate a SoMA checkpoint.")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint written by tools/train.py (or merged by the adapter tools)")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation of the config (`tta_model`)")
    parser.add_argument("--show-dir",
                        help="save drawn predictions (ground truth | prediction) as PNGs under this folder")
    parser.add_argument("--force", action="store_true",
                        help="replace the results (metrics.json, per_class.json) of an earlier test in the work dir")
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
    for evaluator in _evaluators(cfg):
        if evaluator.get("type") in ("DomainIoUMetric", "DomainVOCMetric"):  # per-domain mIoU or mAP
            evaluator.setdefault("output_file", osp.join(cfg.work_dir, "per_class.json"))
            evaluator.setdefault("extra_info", dict(test_resolution=evaluation_resolutions(cfg), tta=tta))


def _evaluators(cfg: Config) -> list:
    return cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]


def result_files(cfg: Config) -> list[str]:
    """The files a test run writes its results to: ``metrics.json`` in the work dir and the ``output_file`` of
    each metric that has one (``per_class.json`` after :func:`record_test_setting`)."""
    files = [osp.join(cfg.work_dir, METRICS_NAME)]
    files += [evaluator["output_file"] for evaluator in _evaluators(cfg)
              if isinstance(evaluator, dict) and evaluator.get("output_file")]
    return files


def _tested_checkpoint(metrics_file: str) -> str | None:
    """The checkpoint an earlier ``metrics.json`` records, if it can be read."""
    try:
        with open(metrics_file) as stream:
            checkpoint = json.load(stream).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        return None
    return checkpoint if isinstance(checkpoint, str) else None


def check_earlier_results(files: list[str], force: bool = False) -> None:
    """Refuse to replace the results of an earlier test unless ``force``.

    Raises:
        OutputExistsError: one of ``files`` exists and ``force`` is not set; the message names the checkpoint
            the earlier results are of and what to do.
    """
    existing = [path for path in files if osp.exists(path)]
    if not existing or force:
        return
    earlier = next((c for path in existing if osp.basename(path) == METRICS_NAME
                    and (c := _tested_checkpoint(path)) is not None), None)
    of = f" of checkpoint '{earlier}'" if earlier else ""
    raise OutputExistsError(
        f"{', '.join(repr(p) for p in existing)} already hold{'s' if len(existing) == 1 else ''} the results of an "
        f"earlier test{of}; keep them by writing this test's results to another folder (--work-dir DIR), or pass "
        "--force to replace them.")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """tools/test.py: evaluate ``CHECKPOINT`` on ``CONFIG``'s test set(s) with the options in ``argv`` (default
    ``sys.argv[1:]``), print the metrics and write ``metrics.json`` to the work dir."""
    args = parse_args(argv)
    with process_group_destroyed_at_exit():
        evaluate_checkpoint(args)


def evaluate_checkpoint(args: argparse.Namespace) -> None:
    """Evaluate the checkpoint and write the metrics (tools/test.py's work once its options are read)."""
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
    check_earlier_results(result_files(cfg), force=args.force)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f"checkpoint '{args.checkpoint}' does not exist.")
    setup_runtime(trusted_checkpoints=[args.checkpoint])  # only the named checkpoint is unpickled fully
    runner = build_runner(cfg)  # the config's runner (strict loading of the checkpoint) and hooks
    metrics = {k: as_number(v) for k, v in runner.test().items()}
    if is_main_process():
        print(format_metrics(metrics))
        write_text_atomic(osp.join(cfg.work_dir, METRICS_NAME), json.dumps(
            dict(metrics, checkpoint=args.checkpoint, tta=args.tta, test_resolution=evaluation_resolutions(cfg),
                 config=args.config, **training_record(runner.loaded_meta)), indent=2))


def training_record(meta: dict | None) -> dict:
    """What metrics.json records of the training run that wrote the checkpoint: its ``seed`` and its config as
    text (``train_config``), from the checkpoint's mmengine ``meta``; ``None`` where the checkpoint has no such
    meta (a merged or converted file). tools/analysis/compare_runs.py groups and pairs runs by these."""
    meta = meta or {}
    seed = meta.get("seed")
    return dict(seed=int(seed) if seed is not None else None, train_config=meta.get("cfg"))

