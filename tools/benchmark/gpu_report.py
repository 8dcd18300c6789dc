"""The report of tools/gpu_check.sh: OUT_DIR/report.md and report.json from the files its steps left in OUT_DIR.

    python tools/benchmark/gpu_report.py OUT_DIR [--dry-run] [--compare-with CPU_OUT_DIR] [--wheelhouse DIR]

Reads ``steps.tsv`` (each step's status and seconds), ``pytest.xml``, ``train_step.json`` (and
``train_step_cuda_ops.json`` when the CUDA ops were built during the check), ``svd_init.json``,
``large_step.json`` and ``svd_init_7b.json`` (the DINOv3-7B step and SVD split) and the demo
run's ``demo/soma_ema/metrics.json`` (next to the same file of ``--compare-with``, e.g. the CPU dry run);
whatever is missing is reported as missing. The goals are checked against the measured ratios.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import xml.etree.ElementTree as ET
from pathlib import Path

GOALS = {  # SoMA vs full fine-tuning, and merged SoMA vs the plain backbone (DINOv2-L, 512x512, batch 4, bf16)
    "step time": ("SoMA step / full fine-tuning", lambda r: r <= 0.70, "<= 0.70"),
    "peak memory": ("SoMA peak memory / full fine-tuning", lambda r: r <= 0.55, "<= 0.55"),
    "merged FPS": ("merged SoMA FPS / plain backbone", lambda r: abs(r - 1.0) <= 0.02, "1.00 +- 0.02"),
}


def is_number(text: str) -> bool:
    try:
        float(str(text).replace(",", ""))
    except ValueError:
        return False
    return True


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table; columns of numbers are right-aligned."""
    aligns = ["---:" if rows and all(is_number(row[i]) for row in rows) else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |",
            *("| " + " | ".join(map(str, row)) + " |" for row in rows)]


def steps_section(out: Path) -> list[str]:
    path = out / "steps.tsv"
    if not path.exists():
        return ["steps.tsv is missing."]
    with path.open() as handle:
        rows = [[r["step"], r["status"], r["seconds"], r["note"]] for r in csv.DictReader(handle, delimiter="\t")]
    return table(["step", "status", "seconds", "note"], rows)


def tests_section(out: Path) -> list[str]:
    path = out / "pytest.xml"
    if not path.exists():
        return ["pytest.xml is missing (the test step did not run or was cut)."]
    rows, counts = [], {"passed": 0, "failed": 0, "skipped": 0}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, detail = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome = "skipped" if kind == "skipped" else "failed"
                detail = (element.get("message") or "").splitlines()[0][:160] if element.get("message") else ""
                break
        counts[outcome] += 1
        rows.append([f"`{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}`", outcome,
                     f"{float(case.get('time', 0)):.1f}", detail.replace("|", "/")])
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    return [summary, "", *table(["test", "result", "seconds", "detail"], rows)]


def train_step_section(out: Path) -> tuple[list[str], dict[str, float], str]:
    """The tables, the goals' ratios, and which deformable-attention path the runs used."""
    path = out / "train_step.json"
    if not path.exists():
        return ["train_step.json is missing (the benchmark did not run or was cut)."], {}, ""
    results = json.loads(path.read_text())
    training = results["training"]
    base = next((r for r in training if r["method"] == "full"), training[0])
    args = results["args"]
    lines = [f"device: {results['device']}; {results['versions']}",
             f"deformable attention: {results.get('msda', 'not recorded')}",
             f"train step: {args['arch']}{' (tiny, --small)' if args['small'] else ''}, "
             f"{args['img_size']}x{args['img_size']}, batch {args['batch']}, precision {training[0]['amp']}, "
             f"median of {args['steps']} steps after {args['warmup']} warm-up", ""]
    lines += table(["method", "step s", "x full", "images/s", "peak MiB", "x full", "trainable"],
                   [[r["method"], f"{r['step_s']:.3f}", f"{r['step_s'] / base['step_s']:.2f}",
                     f"{r['images_per_s']:.2f}", f"{r['peak_mib']:.0f}", f"{r['peak_mib'] / base['peak_mib']:.2f}",
                     f"{r['trainable']:,}"] for r in training])
    ratios = {}
    soma = next((r for r in training if r["method"] == "soma"), None)
    if soma and base["method"] == "full":
        ratios["step time"] = soma["step_s"] / base["step_s"]
        ratios["peak memory"] = soma["peak_mib"] / base["peak_mib"]
    inference = results.get("inference") or []
    if inference:
        first = inference[0]
        plain = next((r for r in inference if r["model"] == "plain backbone"), first)
        lines += ["", f"slide inference: {args['infer_size'][0]}x{args['infer_size'][1]} image, crop "
                      f"{first['crop'][0]}, stride {first['stride'][0]} ({first['windows']} windows), median of "
                      f"{args['infer_repeats']}", ""]
        lines += table(["model", "s/image", "FPS", "x plain"],
                       [[r["model"], f"{r['seconds']:.3f}", f"{1 / r['seconds']:.3f}",
                         f"{plain['seconds'] / r['seconds']:.2f}"] for r in inference])
        merged = next((r for r in inference if r["model"] == "SoMA merged"), None)
        if merged and plain["model"] == "plain backbone":
            ratios["merged FPS"] = plain["seconds"] / merged["seconds"]
    return lines, ratios, results.get("msda", "")


def goals_section(ratios: dict[str, float], dry_run: bool, msda: str) -> list[str]:
    rows = []
    for key, (name, met, target) in GOALS.items():
        if key not in ratios:
            rows.append([name, target, "not measured", "-"])
        else:
            rows.append([name, target, f"{ratios[key]:.2f}", "met" if met(ratios[key]) else "NOT met"])
    if dry_run:
        note = ["CPU dry run at tiny sizes: these ratios say nothing about the goals.", ""]
    elif "SOMA_MSDA_PYTORCH" in msda:
        note = ["Measured with mmcv's deformable attention through PyTorch (mmcv without CUDA ops): the pixel decoder "
                "is slower and larger than with the CUDA kernel in every method, which pulls the ratios to full "
                "fine-tuning towards 1.", ""]
    else:
        note = []
    return [*note, *table(["goal", "target", "measured", ""], rows)]


def svd_section(out: Path) -> list[str]:
    path = out / "svd_init.json"
    if not path.exists():
        return ["svd_init.json is missing (the benchmark did not run or was cut)."]
    results = json.loads(path.read_text())
    lines = ["Accuracy: the largest relative error of the r minor singular values (first 8 matrices) against a "
             "float64 SVD; peak: memory allocated on the GPU beyond the model's weights.", ""]
    for result in results["results"]:
        rows = result["methods"]
        baseline = next(iter(rows.values()))["seconds"]
        lines += [f"**{result['arch']}** on {results['device']} ({results['where']}): {result['shape']}, "
                  f"{result['decompositions']} matrices", ""]
        lines += table(["method", "seconds", "x first method", "rel. error", "peak MiB"],
                       [[name, f"{row['seconds']:.2f}", f"{row['seconds'] / baseline:.2f}",
                         f"{row['max_rel_error']:.1e}",
                         "-" if row["peak_extra_mib"] is None else f"{row['peak_extra_mib']:.0f}"]
                        for name, row in rows.items()])
        lines.append("")
    return lines


def large_section(out: Path) -> list[str]:
    """The DINOv3-7B step (tools/analysis/memory_plan.py --measure) and its SVD split (svd_init.py --arch 7b)."""
    lines = []
    path = out / "large_step.json"
    if path.exists():
        result = json.loads(path.read_text())
        measured = result.get("measured")
        lines += ["Planned peak (GiB) without and with gradient checkpointing:", ""]
        lines += table(["with_cp", "batch x crop", "weights", "optimizer", "activations", "peak"],
                       [["yes" if p["with_cp"] else "no", f"{p['batch']} x {p['img_size']}",
                         f"{p['weights'] / 2**30:.1f}", f"{p['optimizer'] / 2**30:.2f}",
                         f"{p['activations'] / 2**30:.1f}", f"{p['peak'] / 2**30:.1f}"] for p in result["plans"]])
        if measured:
            lines += ["", f"measured on {measured['device']} (with_cp={measured['with_cp']}): peak "
                      f"{measured['peak'] / 2**30:.2f} GiB, step {measured['seconds']:.2f} s; planner error "
                      f"{100 * measured['error']:+.1f} %"]
    else:
        lines.append("large_step.json is missing (the 7B step did not run or was cut).")
    path = out / "svd_init_7b.json"
    lines.append("")
    if path.exists():
        results = json.loads(path.read_text())
        for result in results["results"]:
            for name, row in result["methods"].items():
                lines.append(f"7B SVD split on {results['device']} ({results['where']}), {name}: "
                             f"{row['seconds']:.1f} s for {result['decompositions']} matrices "
                             f"({row.get('all_blocks_seconds', row['seconds']):.1f} s for all adapted blocks), "
                             f"largest relative error of the minor singular values {row['max_rel_error']:.1e}")
    else:
        lines.append("svd_init_7b.json is missing (the 7B SVD step did not run or was cut).")
    return lines


DEMO_METRICS = Path("demo/soma_ema/metrics.json")


def demo_section(out: Path, compare: Path | None) -> list[str]:
    """Per-domain mIoU of the demo training run, next to the same run of another check (the CPU dry run)."""
    runs = {"this run": out / DEMO_METRICS}
    if compare is not None:
        runs[f"{compare.name} (compared)"] = compare / DEMO_METRICS
    found = {name: json.loads(path.read_text()) for name, path in runs.items() if path.exists()}
    if "this run" not in found:
        return [f"{DEMO_METRICS} is missing (the demo run did not run or was cut)."]
    keys = [key for key in found["this run"] if key.endswith("/mIoU")]
    lines = ["tools/demo/run.py --variants soma_ema: the demo's SoMA config (200 iterations), validation every 100, "
             "EMA of the weights from iteration 100, adapters merged for validation and test, tools/test.sh.", ""]
    lines += table(["run", *keys], [[name, *(f"{metrics.get(key, float('nan')):.1f}" for key in keys)]
                                    for name, metrics in found.items()])
    missing = [name for name in runs if name not in found]
    if missing:
        lines += ["", f"no demo metrics in: {', '.join(missing)}"]
    return lines


def cuda_ops_section(out: Path) -> list[str]:
    """The train step measured again after the background build of mmcv's CUDA ops, if that happened."""
    path = out / "train_step_cuda_ops.json"
    if not path.exists():
        return []
    results = json.loads(path.read_text())
    training = results["training"]
    base = training[0]
    return ["## Training step again with mmcv's CUDA ops (built during the check)", "",
            f"deformable attention: {results.get('msda')}", "",
            *table(["method", "step s", "x full", "peak MiB", "x full"],
                   [[r["method"], f"{r['step_s']:.3f}", f"{r['step_s'] / base['step_s']:.2f}",
                     f"{r['peak_mib']:.0f}", f"{r['peak_mib'] / base['peak_mib']:.2f}"] for r in training]), ""]


def msda_path() -> str:
    """Which deformable-attention implementation this environment runs (as the steps' processes did)."""
    try:
        import torch

        from soma.utils.mmcv_ops import mmcv_has_cuda_ops, msda_uses_pytorch
    except ImportError as exc:
        return f"unknown ({exc})"
    if not torch.cuda.is_available():
        return "pure PyTorch (CPU)"
    if msda_uses_pytorch() or not mmcv_has_cuda_ops():
        return "pure PyTorch on the GPU (SOMA_MSDA_PYTORCH=1: mmcv without CUDA ops)"
    return "mmcv's CUDA kernel"


def wheelhouse_line(wheelhouse: Path | None) -> str:
    if wheelhouse is None or not wheelhouse.is_dir():
        return "wheelhouse: none given"
    size = sum(f.stat().st_size for f in wheelhouse.rglob("*") if f.is_file())
    builds = sorted(p.parent.name for p in wheelhouse.glob("mmcv/*/BUILD.txt"))
    return f"wheelhouse: {wheelhouse.name}, {size / 1e6:.1f} MB, prebuilt mmcv: {', '.join(builds) or 'none'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="the steps ran on the CPU at tiny sizes")
    parser.add_argument("--compare-with", type=Path, help="another check's OUT_DIR (the CPU dry run) for the demo")
    parser.add_argument("--wheelhouse", type=Path, help="the wheelhouse the set-up used (its size is reported)")
    args = parser.parse_args(argv)
    out = args.out_dir
    train_lines, ratios, msda = train_step_section(out)
    title = "# GPU check (tools/gpu_check.sh)" + (": CPU dry run" if args.dry_run else "")
    # As the steps ran (train_step.json records it), so that the report can be remade on another machine.
    recorded = out / "train_step.json"
    path = json.loads(recorded.read_text()).get("msda") if recorded.exists() else None
    path = path or msda_path()
    lines = [title, "", f"host: {platform.node()}, python {platform.python_version()}",
             f"deformable attention in every step below: {path}", wheelhouse_line(args.wheelhouse), "",
             "## Steps", "", *steps_section(out), "",
             "## Goals", "", *goals_section(ratios, args.dry_run, msda), "",
             "## GPU tests (pytest -m gpu tests/test_gpu)", "", *tests_section(out), "",
             "## Training step and inference (tools/benchmark/train_step.py)", "", *train_lines, "",
             *cuda_ops_section(out),
             "## SVD initialisation (tools/benchmark/svd_init.py)", "", *svd_section(out), "",
             "## A real training run on the demo scenes (tools/train.py + tools/test.sh)", "",
             *demo_section(out, args.compare_with), "",
             "## The largest backbone: DINOv3-7B + Mask2Former (memory_plan.py, svd_init.py --arch 7b)", "",
             *large_section(out), ""]
    (out / "report.md").write_text("\n".join(lines))
    summary = dict(host=platform.node(), dry_run=args.dry_run, msda=path, goals=ratios,
                   wheelhouse=wheelhouse_line(args.wheelhouse))
    for name in ("train_step", "train_step_cuda_ops", "svd_init", "large_step", "svd_init_7b"):
        if (out / f"{name}.json").exists():
            summary[name] = json.loads((out / f"{name}.json").read_text())
    for name, folder in (("demo", out), ("demo_compared", args.compare_with)):
        if folder is not None and (folder / DEMO_METRICS).exists():
            summary[name] = json.loads((folder / DEMO_METRICS).read_text())
    if (out / "steps.tsv").exists():
        with (out / "steps.tsv").open() as handle:
            summary["steps"] = list(csv.DictReader(handle, delimiter="\t"))
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
