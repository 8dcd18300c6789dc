"""The training-step and inference benchmark behind tools/benchmark/train_step.py (see its docstring for what
is measured and how): building the models from the published configs, synthetic batches, measuring each method
in a fresh process, and the report.
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import platform
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {method: REPO / f"configs/soma/{method}_dinov2-l_gta2cbm-512.py"
           for method in ("full", "frozen", "lora", "pissa", "soma")}
TINY_MODEL = REPO / "configs/demo/mask2former_dinov2-tiny_soma.py"
ARCHS = {"small": (384, 12), "base": (768, 12), "large": (1024, 24), "giant": (1536, 40)}  # width, depth
NUM_CLASSES = 19
INFERENCE = {"plain backbone": ("frozen", False), "SoMA merged": ("soma", True), "SoMA unmerged": ("soma", False)}
GOALS = ("goals (GPU: DINOv2-L, 512, bs 4, bf16, one H100): SoMA step <= 0.70x full, peak memory <= 0.55x full, "
         "merged FPS 1.00 +- 0.02x plain")


# ---------------------------------------------------------------------------------------------------- models
def build_configs(method: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """``(model, optim_wrapper)`` configs of ``method`` from its published config, resized as asked."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIGS[method]))
    model, optim_wrapper = cfg.model, cfg.optim_wrapper
    model.backbone.init_cfg = None
    if args.small:
        tiny = Config.fromfile(str(TINY_MODEL)).model
        peft = model.backbone.get("peft")
        tiny.backbone.update(peft=None if peft is None else dict(peft, r=tiny.backbone.peft.r,
                                                                   start_block=tiny.backbone.peft.start_block),
                             frozen=model.backbone.get("frozen"))
        model = tiny
    elif args.arch != "large" or args.img_size != 512:
        width, depth = ARCHS[args.arch]
        size = (args.img_size, args.img_size)
        model.backbone.update(arch=args.arch, img_size=args.img_size)
        if args.arch != "large":
            model.backbone.out_indices = None  # the arch's default output blocks
            model.decode_head.in_channels = [width] * 4
            if model.backbone.get("peft"):  # blocks 8-23 of 24: the same fraction
                model.backbone.peft.start_block = round(model.backbone.peft.start_block * depth / 24)
        model.data_preprocessor.size = size
        model.test_cfg.update(crop_size=size, stride=(args.img_size * 2 // 3,) * 2)
    model.backbone.update(with_cp=args.with_cp, compile_blocks=args.compile)
    if args.no_amp:
        optim_wrapper = dict({k: v for k, v in optim_wrapper.items() if k not in ("dtype", "loss_scale")},
                             type="OptimWrapper")
    return model, optim_wrapper


def build_model(method: str, args: argparse.Namespace, device: str):
    """The segmentor of ``method`` on ``device``, initialised (SoMA's SVD split of the random weights)."""
    from mmseg.registry import MODELS

    model_cfg, _ = build_configs(method, args)
    model = MODELS.build(model_cfg).to(device)
    model.init_weights()
    return model


def synthetic_batch(num_images: int, size: tuple[int, int], test: bool = False) -> dict:
    """Random images with a 3×4 grid of classes each (12 ground-truth masks per image, as in street scenes)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    generator = torch.Generator().manual_seed(0)
    height, width = size
    rows = torch.arange(height)[:, None] * 3 // height
    cols = torch.arange(width)[None, :] * 4 // width
    inputs, samples = [], []
    for index in range(num_images):
        label = ((rows * 4 + cols + index) % NUM_CLASSES).long()[None]
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size))
        if not test:
            sample.gt_sem_seg = PixelData(data=label)
        inputs.append(torch.randint(0, 255, (3, *size), generator=generator, dtype=torch.uint8))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


# ---------------------------------------------------------------------------------------------------- workers
def prepare_process() -> None:
    """Registries, mmcv op settings and quiet logs in this process (spawned workers start from scratch)."""
    import logging
    import warnings

    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    from soma import register_all_modules

    register_all_modules()
    from soma.utils.runtime import setup_runtime

    setup_runtime()  # SOMA_MSDA_PYTORCH, and named errors for CUDA ops mmcv was built without
    init_default_scope("mmseg")
    # No per-parameter init/optimizer reports; the precision actually used is in the table.
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="torch.meshgrid")  # mmdet's positional encodings, every step


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure_training(method: str, args: argparse.Namespace, device: str) -> dict:
    """Median step time and peak memory of ``method``'s training step (runs in its own process)."""
    from mmengine.optim import build_optim_wrapper

    from soma.config.run import resolve_amp

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = rss_bytes()
    model = build_model(method, args, device).train()
    _, optim_cfg = build_configs(method, args)
    wrapper = build_optim_wrapper(model, resolve_amp(optim_cfg, device=device))
    batch = synthetic_batch(args.batch, (args.img_size,) * 2)
    times = []
    for _ in range(args.warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        model.train_step(batch, wrapper)
        synchronize(device)
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    step = statistics.median(times[args.warmup:])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return dict(method=method, step_s=step, images_per_s=args.batch / step, peak_mib=peak / 2**20,
                trainable=trainable, amp=str(getattr(wrapper, "cast_dtype", None) or "float32").removeprefix("torch."))


def measure_inference(name: str, args: argparse.Namespace, device: str) -> dict:
    """Median seconds of slide inference on one ``--infer-size`` image (runs in its own process)."""
    from soma.peft import merge_soma
    from soma.config.run import resolve_amp

    method, merge = INFERENCE[name]
    model = build_model(method, args, device).eval()
    if merge:
        merge_soma(model)
    _, optim_cfg = build_configs(method, args)
    # Evaluate in the training precision (bf16 also reroutes mmcv's ops without bf16 kernels).
    dtype = resolve_amp(optim_cfg, device=device).get("dtype") if device == "cuda" else None
    batch = synthetic_batch(1, tuple(args.infer_size), test=True)
    crop, stride = model.test_cfg.crop_size, model.test_cfg.stride
    times = []
    precision = torch.autocast(device, dtype=getattr(torch, dtype)) if dtype else contextlib.nullcontext()
    with torch.no_grad(), precision:
        for _ in range(1 + args.infer_repeats):  # the first is warm-up
            synchronize(device)
            start = time.perf_counter()
            model.test_step(batch)
            synchronize(device)
            times.append(time.perf_counter() - start)
    windows = [-(-max(size - c, 0) // s) + 1 for size, c, s in zip(args.infer_size, crop, stride)]
    return dict(model=name, seconds=statistics.median(times[1:]), windows=windows[0] * windows[1],
                crop=list(crop), stride=list(stride))


def _child(conn, fn: Callable, fn_args: tuple) -> None:
    try:
        prepare_process()
        conn.send((True, fn(*fn_args)))
    except BaseException:  # report any failure to the parent instead of dying silently
        conn.send((False, traceback.format_exc()))
    finally:
        conn.close()


def run_isolated(fn: Callable, *fn_args: Any, device: str) -> dict:
    """``fn(*fn_args)`` in a fresh process: forked on CPU (cheap; the parent has run no tensor code), spawned
    on GPU (CUDA cannot be forked)."""
    context = multiprocessing.get_context("fork" if device == "cpu" else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, fn, fn_args))
    process.start()
    sender.close()
    try:
        ok, payload = receiver.recv()
    except EOFError:
        process.join()
        ok, payload = False, f"worker died with exit code {process.exitcode} (out of memory?)"
    process.join()
    if not ok:
        raise RuntimeError(f"{fn.__name__}{fn_args[:1]} failed:\n{payload}")
    return payload


# ---------------------------------------------------------------------------------------------------- report
def versions() -> str:
    import mmcv
    import mmengine
    import mmseg
    import timm

    return (f"python {platform.python_version()}, torch {torch.__version__}, mmengine {mmengine.__version__}, "
            f"mmcv {mmcv.__version__}, mmseg {mmseg.__version__}, timm {timm.__version__}")


def msda_path(device: str) -> str:
    """Which implementation of mmcv's deformable attention (Mask2Former's pixel decoder) the runs used."""
    from soma.utils.mmcv_ops import mmcv_has_cuda_ops, msda_uses_pytorch

    if device == "cpu" or msda_uses_pytorch() or not mmcv_has_cuda_ops():
        return "pure PyTorch" + (" (SOMA_MSDA_PYTORCH)" if device == "cuda" else "")
    return "mmcv CUDA kernel"


def device_name(device: str) -> str:
    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def report(args: argparse.Namespace, device: str, training: list[dict], inference: list[dict]) -> str:
    arch = "tiny (4 blocks, 64 dims)" if args.small else args.arch
    head = "narrow Mask2Former (the tests' tiny head)" if args.small else "Mask2Former"
    base = next((r for r in training if r["method"] == "full"), training[0])
    lines = [f"device: {device_name(device)}", versions(),
             f"command: python {' '.join(sys.argv)}", f"deformable attention: {msda_path(device)}",
             f"train step: DINOv2-{arch} + {head}, {args.img_size}x{args.img_size}, batch {args.batch}, "
             f"precision {training[0]['amp']}, median of {args.steps} steps after {args.warmup} warm-up"
             + (", gradient checkpointing" if args.with_cp else "") + (", compiled blocks" if args.compile else ""),
             f"{'method':8s} {'step s':>8s} {'x full':>7s} {'img/s':>7s} {'peak MiB':>9s} {'x full':>7s} "
             f"{'trainable':>11s}"]
    for r in training:
        lines.append(f"{r['method']:8s} {r['step_s']:8.3f} {r['step_s'] / base['step_s']:7.2f} "
                     f"{r['images_per_s']:7.2f} {r['peak_mib']:9.0f} {r['peak_mib'] / base['peak_mib']:7.2f} "
                     f"{r['trainable']:11,d}")
    if inference:
        first = inference[0]
        plain = next((r for r in inference if r["model"] == "plain backbone"), first)
        lines += [f"slide inference: {args.infer_size[0]}x{args.infer_size[1]} image, crop {first['crop'][0]}, "
                  f"stride {first['stride'][0]} ({first['windows']} windows), median of {args.infer_repeats}",
                  f"{'model':15s} {'s/image':>8s} {'FPS':>7s} {'x plain':>8s}"]
        for r in inference:
            lines.append(f"{r['model']:15s} {r['seconds']:8.3f} {1 / r['seconds']:7.3f} "
                         f"{plain['seconds'] / r['seconds']:8.2f}")
    lines.append(GOALS)
    return "\n".join(lines)
