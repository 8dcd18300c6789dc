"""Training step time and peak memory of SoMA vs full fine-tuning, frozen and LoRA; merged-SoMA inference speed.

    python tools/benchmark/train_step.py [--steps 10] [--warmup 3] [--no-amp] [--with-cp] [--compile] [--json F]
    python tools/benchmark/train_step.py --small                        # tiny arch, CPU smoke run
    python tools/benchmark/train_step.py --arch small --img-size 256 --batch 2 --infer-size 512 1024

The models are built from the published configs (configs/soma/{full,frozen,lora,soma}_dinov2-l_gta2cbm-512.py,
random weights: ``init_cfg=None``): DINOv2-L + Mask2Former, 512×512 crops, batch 4, the schedule's optimizer
wrapper (AMP on GPU, resolved as tools/train.py does). Each measurement runs in a fresh process, so one method's
memory cannot hide in another's. Reported per method: median step time, images/s and peak memory, each as a
ratio to full fine-tuning measured in the same run. Peak memory is ``torch.cuda.max_memory_allocated`` on GPU
and the growth of the process's peak RSS (``ru_maxrss`` minus the RSS before the model is built) on CPU; both
include weights, gradients, optimizer state and activations. Inference: slide inference (crop = training crop,
stride 2/3 of it) of one 1024×2048 image with SoMA merged vs the plain (un-adapted) backbone, as FPS ratios.

``--arch``/``--img-size`` shrink the model for CPU runs: the backbone's output blocks become the arch's
defaults and SoMA/LoRA adapt the same fraction of blocks as blocks 8-23 of 24. ``--small`` uses the tiny test
arch and narrow head of configs/demo/mask2former_dinov2-tiny_soma.py at 64×64, batch 2, 3 steps.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from soma.analysis.train_step import (ARCHS, CONFIGS, INFERENCE, device_name, measure_inference, measure_training,
                                      msda_path, prepare_process, report, run_isolated, versions)
from soma.utils.cli import non_negative_int, positive_int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", choices=sorted(CONFIGS), default=["full", "frozen", "lora", "soma"])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="large")
    parser.add_argument("--img-size", type=positive_int, default=512, help="training crop (and slide window) size")
    parser.add_argument("--batch", type=positive_int, default=4)
    parser.add_argument("--steps", type=positive_int, default=10, help="timed steps per method (median reported)")
    parser.add_argument("--warmup", type=non_negative_int, default=3,
                        help="untimed steps first (allocator, cudnn, compile)")
    parser.add_argument("--infer-size", type=positive_int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--infer-repeats", type=positive_int, default=5)
    parser.add_argument("--no-inference", action="store_true", help="skip the inference benchmark")
    parser.add_argument("--no-amp", action="store_true", help="float32 even on GPU")
    parser.add_argument("--with-cp", action="store_true", help="gradient checkpointing of the trained blocks")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone blocks")
    parser.add_argument("--small", action="store_true", help="tiny arch, 64x64, batch 2, 3 steps (smoke run)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.small:
        args.img_size, args.batch, args.steps, args.warmup = 64, 2, 3, 1
        args.infer_size, args.infer_repeats = [128, 256], 2
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prepare_process()
    training = [run_isolated(measure_training, method, args, args.device, device=args.device)
                for method in args.methods]
    inference = [] if args.no_inference else [
        run_isolated(measure_inference, name, args, args.device, device=args.device) for name in INFERENCE]
    print(report(args, args.device, training, inference))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(device=device_name(args.device), versions=versions(),
                                                   msda=msda_path(args.device),
                                                   args=vars(args), training=training, inference=inference),
                                              indent=2))


if __name__ == "__main__":
    main()
