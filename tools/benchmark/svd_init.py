"""Time SoMA's initialisation (the SVD split) on a ViT-L-shaped model: our paths vs a naive SVD loop.

    python tools/benchmark/svd_init.py [--device cpu|cuda] [--repeats 1] [--small] [--json FILE]

Builds 24 blocks of dim 1024 / MLP 4096 (qkv 3072×1024, proj, fc1, fc2), adapts blocks 8-23 with r=16
(q, k and v decomposed separately) and reports seconds per method and the ratio to the naive float64
``torch.linalg.svd`` loop, all measured in this run. ``--small`` uses a tiny shape (CI smoke run).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn as nn

from soma.peft import SoMAConfig, apply_soma, soma_layers


def vit_linear_stack(dim: int, depth: int, mlp: int, device: str) -> nn.Module:
    """The Linear layers of a ViT, named as in timm (blocks.N.attn.qkv, ...), with random weights."""
    torch.manual_seed(0)
    model = nn.Module()
    model.blocks = nn.ModuleList()
    for _ in range(depth):
        block = nn.Module()
        block.attn, block.mlp = nn.Module(), nn.Module()
        block.attn.qkv, block.attn.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        block.mlp.fc1, block.mlp.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)
        model.blocks.append(block)
    return model.to(device)


def naive_float32_loop(model: nn.Module, config: SoMAConfig) -> None:
    """What a first implementation does: float32 torch.linalg.svd of every target (q/k/v slices included)."""
    for name, module in model.named_modules():
        if config.is_target(name):
            splits = config.splits_for(name)
            for part in module.weight.detach().chunk(splits):
                torch.linalg.svd(part.float(), full_matrices=False)


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs per method")
    parser.add_argument("--small", action="store_true", help="tiny shapes for a smoke run")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    dim, depth, mlp, start = (64, 4, 256, 2) if args.small else (1024, 24, 4096, 8)
    base = vit_linear_stack(dim, depth, mlp, args.device)
    targets = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")

    def run(method: str) -> float:
        best = float("inf")
        for _ in range(args.repeats):
            model = copy.deepcopy(base)
            config = SoMAConfig(r=16 if not args.small else 4, target_modules=targets, start_block=start,
                                svd_method=method)
            best = min(best, timed(lambda: apply_soma(model, config), args.device))
        assert soma_layers(model)
        return best

    results = {"naive float64 svd loop (svd_method='svd')": run("svd"),
               "float64 Gram + eigh (svd_method='gram')": run("gram")}
    config = SoMAConfig(r=16, target_modules=targets, start_block=start)
    results["naive float32 svd loop (inexact, reference)"] = min(
        timed(lambda: naive_float32_loop(base, config), args.device) for _ in range(args.repeats))
    results["svd_method='auto' (the default)"] = run("auto")
    baseline = results["naive float64 svd loop (svd_method='svd')"]
    shape = f"{depth} blocks, dim {dim}, mlp {mlp}, adapted blocks {start}-{depth - 1}"
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    decompositions = sum(config.splits_for(name) for name, _ in base.named_modules() if config.is_target(name))
    print(f"SoMA initialisation on {args.device} ({where}), {shape}, {decompositions} matrices")
    print(f"{'method':48s} {'seconds':>9s} {'ratio':>7s}")
    for name, seconds in results.items():
        print(f"{name:48s} {seconds:9.2f} {seconds / baseline:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(device=args.device, where=where, shape=shape,
                                                   decompositions=decompositions, seconds=results), indent=2))


if __name__ == "__main__":
    main()
