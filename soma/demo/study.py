"""The demo's method study (``tools/demo/run.py --study``) and its ``--seeds`` loop: every variant trained once per
seed, each run tested, and the runs compared with confidence intervals by :mod:`soma.analysis.compare_runs`.

The study asks whether adapting the minor singular components keeps a pretrained model's robustness better than
adapting the principal ones (PiSSA), a random low-rank update (LoRA), everything (full fine-tuning) or nothing
(frozen). For that the pretrained ViT must have style-robust features worth keeping: it is pretrained on scenes in
many random looks (``pretrain(styles="varied")``); fine-tuning sees the source style only; the night, fog and palette
renderings are held out for testing. The pretrained ViT is the same for every run: the seeds vary the fine-tuning
(head and adapter initialisation, data order, sampled points), not the pretraining.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from ..analysis.compare_runs import compare_to_folder
from .pretrain import PretrainStyles, pretrain
from .run import COMPARED, VARIANTS, config_iterations, train_and_test
from .scenes import write_dataset

__all__ = ["STUDY_SEEDS", "STUDY_ITERS", "STUDY_PRETRAIN_STEPS", "STUDY_PRETRAINED", "run_seeds"]

# Sized so that the study (5 variants x 3 seeds) takes well under 30 minutes on 2 idle CPU cores (the default demo's
# 200 iterations take about 80 s there) and finishes within an hour on 2 cores shared with other jobs.
STUDY_SEEDS = (0, 1, 2)
STUDY_ITERS = 60
STUDY_PRETRAIN_STEPS = 400
STUDY_PRETRAINED = "checkpoints/demo_vit_pretrained_varied.pth"


def run_seeds(work_dir: str | Path, data_root: str | Path, pretrained: str | Path, seeds: Sequence[int],
              variants: Sequence[str] = COMPARED, iters: int | None = None, pretrain_steps: int = 300,
              pretrain_styles: PretrainStyles = "recoloured", num_train: int = 400, num_val: int = 100) -> Path:
    """Train and test each of ``variants`` once per seed, then compare them over the seeds.

    Runs go to ``work_dir/<variant>/seed_<N>`` (seed-major order, so that a study cut short still has every variant
    for its first seeds); ``work_dir/comparison.md`` and ``comparison.png`` come from
    :func:`soma.analysis.compare_runs.compare_to_folder` (differences to SoMA when it is among the variants), and
    ``work_dir/study.md`` adds the settings, the wall time and the machine's load during the runs.

    Returns:
        The path of ``study.md``.
    """
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown demo variant(s) {unknown}: choose from {sorted(VARIANTS)}")
    start = time.perf_counter()
    work_root, data_root, pretrained = Path(work_dir), Path(data_root), Path(pretrained)
    write_dataset(data_root, num_train=num_train, num_val=num_val)
    stamp = time.perf_counter()
    pretrain(pretrained, steps=pretrain_steps, styles=pretrain_styles)
    print(f"[study] pretrained ViT ({pretrain_styles} styles) ready: {pretrained} "
          f"({time.perf_counter() - stamp:.0f} s)", flush=True)
    loads = [os.getloadavg()[0]]  # 1-minute load average of the machine, sampled after each run
    runs = []
    for seed in seeds:
        for name in variants:
            stamp = time.perf_counter()
            run_dir = work_root / name / f"seed_{seed}"
            metrics = train_and_test(VARIANTS[name], data_root, pretrained, run_dir, iters, seed)
            runs.append(run_dir)
            loads.append(os.getloadavg()[0])
            print(f"[study] {name}, seed {seed}: target mean {metrics['mean/mIoU']:.1f} mIoU "
                  f"({time.perf_counter() - stamp:.0f} s, load {loads[-1]:.1f})", flush=True)
    reference = "soma" if "soma" in variants else None
    table, written = compare_to_folder(runs, work_root, reference=reference, force=True)
    elapsed = time.perf_counter() - start
    iterations = iters or config_iterations(VARIANTS[variants[0]].config)
    summary = "\n".join([
        f"{len(variants)} variants x {len(seeds)} seeds, {iterations} fine-tuning iterations on the source style, "
        f"{num_train} training scenes, {num_val} test scenes per style; pretrained ViT: {pretrain_styles} styles, "
        f"{pretrain_steps} steps.", "", table, "",
        f"Plot: {written[1]}",
        f"Study finished in {elapsed / 60:.1f} min on {os.cpu_count()} CPU cores; 1-minute load average during the "
        f"runs: {min(loads):.1f} to {max(loads):.1f} (mean {sum(loads) / len(loads):.1f})."])
    summary_file = work_root / "study.md"
    summary_file.write_text(summary + "\n")
    print("\n" + summary, flush=True)
    return summary_file

