"""The SoMA demo on CPU: generate scenes → pretrain a small ViT → fine-tune → evaluate on shifted styles.

    python tools/demo/run.py            # SoMA only (~2-3 min on 2 cores after set-up)
    python tools/demo/run.py --all      # also frozen, full fine-tuning, LoRA and PiSSA, side by side
    python tools/demo/run.py --variants soma_ema   # SoMA validated during training, EMA weights (GPU check's run)

Everything runs through the same pieces as the real benchmarks: the registered dataset and backbone, the
Mask2Former segmentor, ``tools/train.py`` (mmengine's Runner) and ``tools/test.sh`` with the per-domain metric.
Only sizes differ. It is a mechanics demo on 64×64 synthetic scenes, not the paper's numbers.

Outputs under ``--work-dir`` (default ``work_dirs/demo``): one folder per variant (logs, checkpoint,
``metrics.json``, per-class IoU in ``per_class.json``), ``summary.md`` (the table) and ``predictions.png``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soma.demo.run import REPO, VARIANTS, run_demo


def repo_path(path: str) -> Path:
    """``path`` made absolute, relative to the repository root."""
    return REPO / path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also train the frozen, full FT, LoRA, PiSSA baselines")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), metavar="NAME",
                        help=f"train these instead (choices: {', '.join(sorted(VARIANTS))}; default: soma)")
    # Relative paths are taken from the repository root, so the demo runs the same from any folder.
    parser.add_argument("--work-dir", type=repo_path, default="work_dirs/demo")
    parser.add_argument("--data-root", type=repo_path, default="data/demo",
                        help="where the generated scenes go (cached)")
    parser.add_argument("--pretrained", type=repo_path, default="checkpoints/demo_vit_pretrained.pth",
                        help="the demo ViT's weights (made on the first run, then reused)")
    parser.add_argument("--iters", type=int, help="fine-tuning iterations (default: the configs')")
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--num-train", type=int, default=400, help="source training scenes")
    parser.add_argument("--num-val", type=int, default=100, help="test scenes per style")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.all and args.variants:
        raise SystemExit("choose either --all or --variants")
    run_demo(args.work_dir, args.data_root, args.pretrained, all_variants=args.all, iters=args.iters,
             pretrain_steps=args.pretrain_steps, num_train=args.num_train, num_val=args.num_val,
             variants=args.variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
