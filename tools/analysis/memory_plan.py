"""Estimate a config's peak training memory before a run, and which GPUs it fits.

    python tools/analysis/memory_plan.py CONFIG [--batch N] [--img-size S] [--cfg-options key=value ...]
    python tools/analysis/memory_plan.py CONFIG --batch 2 --img-size 256 --measure     # + a real run to compare

Prints one row without and one with gradient checkpointing (``with_cp``): weights, gradients, optimizer state,
activations (GiB) and the peak, and which of the 24/40/48/80/141 GB GPUs it fits with 10 % headroom. Nothing of
the model is allocated: weights are counted on the meta device, the backbone's activations by running its
forward and backward on fake tensors, the head's measured at small sizes and extrapolated (soma/analysis/
memory_plan.py says how). ``--measure`` also runs real training steps at the same size (CPU: exact live-tensor
peak and resident-set growth; CUDA: ``torch.cuda.max_memory_allocated``) and prints the planner's error: use it
at sizes the machine can run.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from soma.config.loading import load_config
from soma.config.run import CfgOptionsAction, merge_cfg_options
from soma.utils.cli import positive_int
from soma.utils.errors import UserError, exit_on_user_error


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--batch", type=positive_int, help="images per step (default: train_dataloader.batch_size)")
    parser.add_argument("--img-size", type=positive_int, help="square crop (default: the backbone's img_size)")
    parser.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                        help="bfloat16 autocast: auto = the config's AmpOptimWrapper")
    parser.add_argument("--measure", choices=["cpu", "cuda"], nargs="?", const="cpu",
                        help="also run real training steps at this size and compare (the config's with_cp)")
    parser.add_argument("--json", help="write the plans (and measurement) to this file")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, help="override config keys: a.b=value")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from mmseg.utils import register_all_modules

    from soma import register_all_modules as register_soma_modules

    from soma.analysis.memory_plan import GIB, format_plans, measure_peak, plan_memory

    register_all_modules(init_default_scope=False)
    register_soma_modules()
    if args.measure:
        from soma.utils.runtime import setup_runtime

        setup_runtime()  # SOMA_MSDA_PYTORCH, and named errors for CUDA ops mmcv was built without
    cfg = load_config(args.config)
    if args.cfg_options:
        merge_cfg_options(cfg, args.cfg_options)
    try:
        amp = None if args.amp == "auto" else args.amp == "on"
        name = args.config.rsplit("/", 1)[-1].removesuffix(".py")
        plans = [plan_memory(cfg, args.batch, args.img_size, with_cp=cp, amp=amp, name=name) for cp in (False, True)]
    except ValueError as exc:  # an option the backbone or head refuses (e.g. an unknown arch), as a UserError
        raise UserError(str(exc)) from None
    print(format_plans(plans))
    result = {"plans": [dict(with_cp=p.with_cp, batch=p.batch, img_size=p.img_size, amp=p.amp, weights=p.weights,
                             gradients=p.gradients, optimizer=p.optimizer, activations=p.activations, peak=p.peak,
                             trainable=p.trainable) for p in plans]}
    if args.measure:
        configured = bool(cfg.model.backbone.get("with_cp"))
        plan = plans[int(configured)]
        measured = measure_peak(cfg, plan.batch, plan.img_size, with_cp=configured, amp=plan.amp,
                                device=args.measure)
        error = (plan.peak - measured.step_peak) / measured.step_peak
        rss = "" if measured.rss_growth is None else f", resident-set growth {measured.rss_growth / GIB:.3f} GiB"
        print(f"measured ({measured.device}, with_cp={configured}): peak {measured.step_peak / GIB:.3f} GiB{rss}, "
              f"{measured.seconds:.2f} s/step; planned {plan.peak / GIB:.3f} GiB: error {100 * error:+.1f} %")
        result["measured"] = dict(device=measured.device, with_cp=configured, peak=measured.step_peak,
                                  rss_growth=measured.rss_growth, seconds=measured.seconds, error=error)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
