"""The SoMA demo on CPU: generate scenes → pretrain a small ViT → fine-tune → evaluate on shifted styles.

    python tools/demo/run.py            # SoMA only (~2-3 min on 2 cores after set-up)
    python tools/demo/run.py --all      # also frozen, full fine-tuning, LoRA and PiSSA, side by side
    python tools/demo/run.py --variants soma_ema   # SoMA validated during training, EMA weights (GPU check's run)
    python tools/demo/run.py --study    # the method study: 5 variants x 3 seeds, table with 95 % CIs
    python tools/demo/run.py --all --seeds 0 1 2   # the default demo's variants over seeds, compared the same way

Everything runs through the same pieces as the real benchmarks: the registered dataset and backbone, the
Mask2Former segmentor, ``tools/train.py`` (mmengine's Runner) and ``tools/test.sh`` with the per-domain metric.
Only sizes differ. It is a mechanics demo on 64×64 synthetic scenes, not the paper's numbers.

Outputs under ``--work-dir`` (default ``work_dirs/demo``): one folder per variant (logs, checkpoint,
``metrics.json``, per-class IoU in ``per_class.json``), ``summary.md`` (the table) and ``predictions.png``.

``--study`` (default ``--work-dir work_dirs/demo_study``) pretrains the ViT on scenes in many random looks, fine-tunes
frozen, full, LoRA, PiSSA and SoMA on the source style once per seed and compares them on the held-out styles:
``<variant>/seed_<N>/`` per run, ``comparison.md`` and ``comparison.png`` (tools/analysis/compare_runs.py), and
``study.md`` (settings, table, wall time, machine load). ``--seeds`` runs that loop for the default demo's set-up.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soma.demo.run import COMPARED, REPO, VARIANTS, run_demo
from soma.demo.study import STUDY_ITERS, STUDY_PRETRAIN_STEPS, STUDY_PRETRAINED, STUDY_SEEDS, run_seeds
from soma.utils.cli import positive_int, random_seed


def repo_path(path: str) -> Path:
    """``path`` made absolute, relative to the repository root."""
    return REPO / path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also train the frozen, full FT, LoRA, PiSSA baselines")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), metavar="NAME",
                        help=f"train these instead (choices: {', '.join(sorted(VARIANTS))}; default: soma)")
    # Relative paths are taken from the repository root, so the demo runs the same from any folder.
    parser.add_argument("--work-dir", type=repo_path, help="default: work_dirs/demo (--study: work_dirs/demo_study)")
    parser.add_argument("--data-root", type=repo_path, default="data/demo",
                        help="where the generated scenes go (cached)")
    parser.add_argument("--pretrained", type=repo_path,
                        help="the demo ViT's weights (made on the first run, then reused; default: "
                             f"checkpoints/demo_vit_pretrained.pth, --study: {STUDY_PRETRAINED})")
    parser.add_argument("--iters", type=positive_int,
                        help=f"fine-tuning iterations (default: the configs', --study: {STUDY_ITERS})")
    parser.add_argument("--pretrain-steps", type=positive_int, help=f"default: 300 (--study: {STUDY_PRETRAIN_STEPS})")
    parser.add_argument("--num-train", type=positive_int, default=400, help="source training scenes")
    parser.add_argument("--num-val", type=positive_int, default=100, help="test scenes per style")
    parser.add_argument("--study", action="store_true",
                        help="the method study: ViT pretrained on varied styles, frozen/full/LoRA/PiSSA/SoMA "
                             "fine-tuned once per seed, compared with 95%% CIs on held-out styles")
    parser.add_argument("--seeds", type=random_seed, nargs="+", metavar="N",
                        help="train each variant once per seed and compare them over the seeds "
                             f"(--study default: {' '.join(map(str, STUDY_SEEDS))})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.all and args.variants:
        raise SystemExit("choose either --all or --variants")
    # --study changes the defaults only; every option still overrides them.
    if args.study:
        defaults = dict(work_dir="work_dirs/demo_study", pretrained=STUDY_PRETRAINED, iters=STUDY_ITERS,
                        pretrain_steps=STUDY_PRETRAIN_STEPS)
    else:
        defaults = dict(work_dir="work_dirs/demo", pretrained="checkpoints/demo_vit_pretrained.pth", iters=None,
                        pretrain_steps=300)
    work_dir = args.work_dir or repo_path(defaults["work_dir"])
    pretrained = args.pretrained or repo_path(defaults["pretrained"])
    iters, pretrain_steps = args.iters or defaults["iters"], args.pretrain_steps or defaults["pretrain_steps"]
    if args.study or args.seeds:
        variants = args.variants or (list(COMPARED) if args.study or args.all else ["soma"])
        run_seeds(work_dir, args.data_root, pretrained, seeds=args.seeds or STUDY_SEEDS, variants=variants,
                  iters=iters, pretrain_steps=pretrain_steps, pretrain_styles="varied" if args.study else "recoloured",
                  num_train=args.num_train, num_val=args.num_val)
    else:
        run_demo(work_dir, args.data_root, pretrained, all_variants=args.all, iters=iters,
                 pretrain_steps=pretrain_steps, num_train=args.num_train, num_val=args.num_val,
                 variants=args.variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
