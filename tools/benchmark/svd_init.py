"""Time SoMA's initialisation (the SVD split) on a ViT-L- or ViT-g-shaped model: our paths vs a naive SVD loop.

    python tools/benchmark/svd_init.py [--device cpu|cuda] [--arch large giant 7b] [--repeats 1] [--small] [--json F]
    python tools/benchmark/svd_init.py --device cpu --arch 7b --blocks 1 --methods gram   # a CPU sample of the 7B

``large``: 24 blocks of dim 1024 / MLP 4096 (qkv 3072×1024, proj, fc1, fc2), blocks 8-23 adapted;
``giant`` (DINOv2-g): 40 blocks of dim 1536 with the packed SwiGLU MLP (fc1 8192×1536, fc2 1536×4096), blocks
13-39 adapted (the same fraction); ``7b`` (DINOv3-7B): 40 blocks of dim 4096 with the SwiGLU MLP (fc1_g and fc1_x
8192×4096, fc2 4096×8192), blocks 13-39 adapted. r=16, q, k and v decomposed separately. ``--blocks N`` builds and
decomposes only N adapted blocks (a CPU sample of a model too large for RAM; 7B: 27 blocks of 168M parameters)
and also reports the time scaled to all adapted blocks; ``--methods`` picks the paths to run. Reported per
method: seconds, the ratio to the first method run, and its accuracy: the largest relative error of the kept
(minor) singular values against a float64 ``torch.linalg.svdvals`` reference, all measured in this run; on a GPU
also the peak extra memory. ``--small`` uses a tiny shape (CI smoke run).
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
from soma.utils.cli import positive_int


# dim, depth, MLP hidden width, fc1 outputs (2 x hidden for a packed SwiGLU), first adapted block
SHAPES = {"small": (64, 4, 256, 256, 2), "large": (1024, 24, 4096, 4096, 8), "giant": (1536, 40, 4096, 8192, 13),
          "7b": (4096, 40, 8192, 8192, 13)}
RANK = {"small": 4, "large": 16, "giant": 16, "7b": 16}
SWIGLU = {"7b"}  # separate gate and value projections (fc1_g, fc1_x), as timm's DINOv3 SwiGLU
TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc1_g", "mlp.fc1_x", "mlp.fc2")
METHODS = {"svd": "naive float64 svd loop (svd_method='svd')", "gram": "float64 Gram + eigh (svd_method='gram')",
           "auto": "svd_method='auto' (the default)"}


def vit_linear_stack(arch: str, device: str, blocks: int | None = None) -> nn.Module:
    """The Linear layers of a ViT, named as in timm (blocks.N.attn.qkv, ...), with random weights; only ``blocks``
    blocks (all to be adapted) when given."""
    dim, depth, hidden, fc1_out, _ = SHAPES[arch]
    torch.manual_seed(0)
    model = nn.Module()
    model.blocks = nn.ModuleList()
    for _ in range(depth if blocks is None else blocks):
        block = nn.Module()
        block.attn, block.mlp = nn.Module(), nn.Module()
        block.attn.qkv, block.attn.proj = nn.Linear(dim, 3 * dim, device=device), nn.Linear(dim, dim, device=device)
        if arch in SWIGLU:
            block.mlp.fc1_g = nn.Linear(dim, hidden, device=device)
            block.mlp.fc1_x = nn.Linear(dim, hidden, device=device)
        else:
            block.mlp.fc1 = nn.Linear(dim, fc1_out, device=device)
        block.mlp.fc2 = nn.Linear(hidden, dim, device=device)
        model.blocks.append(block)
    return model


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


def benchmark(arch: str, device: str, repeats: int, blocks: int | None = None,
              methods: tuple[str, ...] = tuple(METHODS), naive32: bool = True) -> dict:
    """Seconds, accuracy and (GPU) peak extra memory of each SVD path for one model shape."""
    dim, depth, hidden, fc1_out, start = SHAPES[arch]
    r = RANK[arch]
    base = vit_linear_stack(arch, device, blocks)
    adapted_blocks = depth - start
    if blocks is not None:
        start = 0  # every built block is adapted

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
    # The first adapted block's matrices (two blocks' for the smaller archs): the accuracy check.
    sample = parts[:8] if blocks is None else parts[:len(parts) // blocks]
    scale = 1.0 if blocks is None else adapted_blocks / blocks  # seconds for all adapted blocks
    rows = {}
    for method in methods:
        seconds, peak = run(method)
        error = relative_error(sample, r, lambda w, m=method: svd_components(w, r, "minor", m)[1])
        rows[METHODS[method]] = dict(seconds=seconds, all_blocks_seconds=seconds * scale, max_rel_error=error,
                                     peak_extra_mib=peak)
    if naive32:
        seconds = min(timed(lambda: naive_float32_loop(base, config("svd")), device) for _ in range(repeats))
        error = relative_error(sample, r, lambda w: torch.linalg.svd(w.float(), full_matrices=False)[1][-r:])
        rows["naive float32 svd loop (inexact, reference)"] = dict(
            seconds=seconds, all_blocks_seconds=seconds * scale, max_rel_error=error, peak_extra_mib=None)
    mlp = f"fc1_g/fc1_x {hidden}x{dim}" if arch in SWIGLU else f"fc1 {fc1_out}x{dim}"
    built = f"{blocks} of the {adapted_blocks} adapted blocks built" if blocks else \
        f"adapted blocks {start}-{depth - 1}"
    shape = f"{depth} blocks, dim {dim}, {mlp}, fc2 {dim}x{hidden}, {built}, r={r}"
    return dict(arch=arch, shape=shape, decompositions=len(parts), adapted_blocks=adapted_blocks,
                built_blocks=blocks, methods=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", nargs="+", choices=["large", "giant", "7b"], default=["large"])
    parser.add_argument("--blocks", type=positive_int, help="build and decompose only this many adapted blocks")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--no-float32", action="store_true", help="skip the naive float32 reference loop")
    parser.add_argument("--repeats", type=positive_int, default=1, help="best of N runs per method")
    parser.add_argument("--small", action="store_true", help="tiny shapes for a smoke run")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    results = []
    for arch in ["small"] if args.small else args.arch:
        result = benchmark(arch, args.device, args.repeats, args.blocks, tuple(args.methods), not args.no_float32)
        results.append(result)
        baseline = next(iter(result["methods"].values()))["seconds"]
        print(f"SoMA initialisation on {args.device} ({where}), {result['shape']}, {result['decompositions']} "
              "matrices; accuracy: largest relative error of the r minor singular values vs float64 svd "
              "(first 8 matrices)")
        print(f"{'method':48s} {'seconds':>9s} {'all blocks':>10s} {'ratio':>7s} {'rel. error':>11s} "
              f"{'peak MiB':>9s}")
        for name, row in result["methods"].items():
            peak = "-" if row["peak_extra_mib"] is None else f"{row['peak_extra_mib']:.0f}"
            print(f"{name:48s} {row['seconds']:9.2f} {row['all_blocks_seconds']:10.1f} "
                  f"{row['seconds'] / baseline:7.2f} {row['max_rel_error']:11.1e} {peak:>9s}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(device=args.device, where=where, results=results), indent=2))


if __name__ == "__main__":
    main()
