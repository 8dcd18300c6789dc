"""Time SoMA's initialisation (the SVD split) on a ViT-L- or ViT-g-shaped model: our paths vs a naive SVD loop.

    python tools/benchmark/svd_init.py [--device cpu|cuda] [--arch large giant] [--repeats 1] [--small] [--json F]

``large``: 24 blocks of dim 1024 / MLP 4096 (qkv 3072×1024, proj, fc1, fc2), blocks 8-23 adapted;
``giant`` (DINOv2-g): 40 blocks of dim 1536 with the packed SwiGLU MLP (fc1 8192×1536, fc2 1536×4096), blocks
13-39 adapted (the same fraction). r=16, q, k and v decomposed separately. Reported per method: seconds, the
ratio to the naive float64 ``torch.linalg.svd`` loop, and its accuracy: the largest relative error of the kept
(minor) singular values against that float64 reference, all measured in this run; on a GPU also the peak extra
memory. ``--small`` uses a tiny shape (CI smoke run).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from soma.peft import SoMAConfig, apply_soma, soma_layers
from soma.peft.decompose import svd_components


# dim, depth, MLP hidden width, fc1 outputs (2 x hidden for a packed SwiGLU), first adapted block
SHAPES = {"small": (64, 4, 256, 256, 2), "large": (1024, 24, 4096, 4096, 8), "giant": (1536, 40, 4096, 8192, 13)}
RANK = {"small": 4, "large": 16, "giant": 16}
TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def vit_linear_stack(arch: str, device: str) -> nn.Module:
    """The Linear layers of a ViT, named as in timm (blocks.N.attn.qkv, ...), with random weights."""
    dim, depth, hidden, fc1_out, _ = SHAPES[arch]
    torch.manual_seed(0)
    model = nn.Module()
    model.blocks = nn.ModuleList()
    for _ in range(depth):
        block = nn.Module()
        block.attn, block.mlp = nn.Module(), nn.Module()
        block.attn.qkv, block.attn.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        block.mlp.fc1, block.mlp.fc2 = nn.Linear(dim, fc1_out), nn.Linear(hidden, dim)
        model.blocks.append(block)
    return model.to(device)


def target_matrices(model: nn.Module, config: SoMAConfig) -> list[torch.Tensor]:
    """Every matrix SoMA decomposes (q, k and v as separate slices)."""
    return [part for name, module in model.named_modules() if config.is_target(name)
            for part in module.weight.detach().chunk(config.splits_for(name))]


def naive_float32_loop(model: nn.Module, config: SoMAConfig) -> list[torch.Tensor]:
    """What a first implementation does: float32 torch.linalg.svd of every target; its r smallest values."""
    return [torch.linalg.svd(part.float(), full_matrices=False)[1][-config.r:]
            for part in target_matrices(model, config)]


def relative_error(parts: list[torch.Tensor], r: int, values: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Largest relative error of the r minor singular values that ``values`` gives, vs float64 LAPACK/cuSOLVER."""
    worst = 0.0
    for part in parts:
        reference = torch.linalg.svdvals(part.double())[-r:]
        got = values(part).double().sort(descending=True).values
        worst = max(worst, ((got - reference).abs() / reference).max().item())
    return worst


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def benchmark(arch: str, device: str, repeats: int) -> dict:
    """Seconds, accuracy and (GPU) peak extra memory of each SVD path for one model shape."""
    dim, depth, hidden, fc1_out, start = SHAPES[arch]
    r = RANK[arch]
    base = vit_linear_stack(arch, device)

    def config(method: str) -> SoMAConfig:
        return SoMAConfig(r=r, target_modules=TARGETS, start_block=start, svd_method=method)

    def run(method: str) -> tuple[float, float | None]:
        best, peak = float("inf"), None
        for _ in range(repeats):
            model = copy.deepcopy(base)
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
            best = min(best, timed(lambda m=model: apply_soma(m, config(method)), device))
            if device == "cuda":
                peak = (torch.cuda.max_memory_allocated() - before) / 2**20
            assert soma_layers(model)
            model = None  # free it before the next repeat
        return best, peak

    parts = target_matrices(base, config("svd"))
    sample = parts[:8]  # the first two adapted blocks' q, k, v, proj, fc1, fc2: the accuracy check
    rows = {}
    for label, method in (("naive float64 svd loop (svd_method='svd')", "svd"),
                          ("float64 Gram + eigh (svd_method='gram')", "gram"),
                          ("svd_method='auto' (the default)", "auto")):
        seconds, peak = run(method)
        error = relative_error(sample, r, lambda w, m=method: svd_components(w, r, "minor", m)[1])
        rows[label] = dict(seconds=seconds, max_rel_error=error, peak_extra_mib=peak)
    seconds = min(timed(lambda: naive_float32_loop(base, config("svd")), device) for _ in range(repeats))
    error = relative_error(sample, r, lambda w: torch.linalg.svd(w.float(), full_matrices=False)[1][-r:])
    rows["naive float32 svd loop (inexact, reference)"] = dict(seconds=seconds, max_rel_error=error,
                                                                peak_extra_mib=None)
    shape = (f"{depth} blocks, dim {dim}, fc1 {fc1_out}x{dim}, fc2 {dim}x{hidden}, adapted blocks {start}-{depth - 1},"
             f" r={r}")
    return dict(arch=arch, shape=shape, decompositions=len(parts), methods=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", nargs="+", choices=["large", "giant"], default=["large"])
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs per method")
    parser.add_argument("--small", action="store_true", help="tiny shapes for a smoke run")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    results = []
    for arch in ["small"] if args.small else args.arch:
        result = benchmark(arch, args.device, args.repeats)
        results.append(result)
        baseline = result["methods"]["naive float64 svd loop (svd_method='svd')"]["seconds"]
        print(f"SoMA initialisation on {args.device} ({where}), {result['shape']}, {result['decompositions']} "
              "matrices; accuracy: largest relative error of the r minor singular values vs float64 svd "
              "(first 8 matrices)")
        print(f"{'method':48s} {'seconds':>9s} {'ratio':>7s} {'rel. error':>11s} {'peak MiB':>9s}")
        for name, row in result["methods"].items():
            peak = "-" if row["peak_extra_mib"] is None else f"{row['peak_extra_mib']:.0f}"
            print(f"{name:48s} {row['seconds']:9.2f} {row['seconds'] / baseline:7.2f} {row['max_rel_error']:11.1e} "
                  f"{peak:>9s}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(device=args.device, where=where, results=results), indent=2))


if __name__ == "__main__":
    main()
