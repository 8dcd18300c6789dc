"""Compare methods over seeds: per-domain scores as mean ± 95 % confidence interval, and paired differences to a
reference method (the library part of tools/analysis/compare_runs.py).

A *run* is the work dir of one ``tools/test.py`` run of a trained checkpoint. Its ``metrics.json`` holds the
per-domain scores (``<domain>/mIoU`` or ``<domain>/mAP``, and ``mean/...`` over the config's target domains,
``mean_over``), the config it was tested with (``config``: its file name names the *method*) and, from the
checkpoint, the training run's ``seed`` and config (``train_config``). Runs are grouped by method and paired
across methods by seed.

Statistics over the n seeds of a method (n ≥ 2):

* the 95 % confidence interval of a mean is ``mean ± t_{0.975, n-1} · s / √n``, with ``s`` the sample standard
  deviation (ddof 1) and ``t`` the Student t quantile; with one seed it is undefined (shown as such, never 0);
* the difference of a method to the reference is the mean of the per-seed differences of the target-domain mean
  (seeds matched by ``randomness.seed``), with the same interval over those differences and the two-sided paired
  t-test (:func:`scipy.stats.ttest_rel`) for its p-value.

Comparisons are between like runs only: the training configs may differ in the method's own fields
(:data:`METHOD_FIELDS`) across methods and in the seed, in nothing else unless the caller allows the field.
"""
from __future__ import annotations

import glob
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils import ConfigError, UserError, atomic_path, check_output_dir, write_text_atomic

__all__ = ["Run", "Interval", "Comparison", "METHOD_FIELDS", "find_runs", "load_run", "load_runs", "check_alike",
           "interval", "paired_difference", "compare", "format_markdown", "plot_comparison", "compare_to_folder"]

METRICS_FILE = "metrics.json"
OUTPUTS = ("comparison.md", "comparison.png")
# What the configs of one backbone change between frozen, full fine-tuning, LoRA, PiSSA, DoRA and SoMA.
METHOD_FIELDS = ("model.backbone.peft", "model.backbone.frozen", "optim_wrapper.paramwise_cfg")
# Bookkeeping that differs between any two runs without changing the experiment.
IGNORED_FIELDS = ("work_dir", "load_from", "resume", "launcher", "randomness.seed")


@dataclass(frozen=True)
class Run:
    """One test run: where it is, the method (config name), the training seed, its scores and training config."""

    path: Path
    method: str
    seed: int
    metric: str  # "mIoU" or "mAP"
    scores: dict[str, float]  # domain (and "mean") -> score
    config: dict[str, Any] = field(repr=False)  # the training config, flattened to dotted keys


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values and the half-width of its 95 % t-interval (``None`` when undefined: n < 2)."""

    mean: float
    half_width: float | None
    n: int

    def __str__(self) -> str:
        if self.half_width is None:
            return f"{self.mean:.1f} (n={self.n}: no CI)"
        return f"{self.mean:.1f} ± {self.half_width:.1f}"


@dataclass(frozen=True)
class Difference:
    """A method minus the reference over paired seeds: the mean difference with its interval, and the p-value."""

    interval: Interval
    p_value: float | None  # None: undefined (fewer than 2 pairs, or identical differences)


@dataclass
class Comparison:
    """The table's content: methods in order, their seeds and per-domain intervals, differences to the reference."""

    metric: str
    domains: list[str]  # per-domain columns, then "mean" (over the target domains)
    target_domains: list[str]
    seeds: list[int]
    reference: str | None
    intervals: dict[str, dict[str, Interval]]  # method -> domain -> interval
    differences: dict[str, Difference]  # method -> target-mean difference to the reference
    skipped: list[Path] = field(default_factory=list)  # failed runs left out on request


# ------------------------------------------------------------------------------------------------- finding runs
def find_runs(patterns: Iterable[str | Path]) -> list[Path]:
    """Run folders named by ``patterns``: folders, or glob patterns of folders (quoted, so the shell left them).

    Raises:
        UserError: a pattern matches no folder (a typo would otherwise drop runs from the comparison unnoticed).
    """
    found: list[Path] = []
    for pattern in map(str, patterns):
        matches = [Path(match) for match in (sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern])
                   if Path(match).is_dir()]
        if not matches:
            raise UserError(f"no run folders found in '{pattern}'; give the work dirs of test runs (folders with "
                            "metrics.json), or a quoted glob such as 'work_dirs/study/*/seed_*'.")
        found += matches
    return list(dict.fromkeys(found))  # a folder named twice is one run


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = ((str(index), value) for index, value in enumerate(node))
    else:
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    if not flat and prefix:
        flat[prefix] = node  # an empty dict or list is a value too
    return flat


def _parse_config(text: str, where: Path) -> dict[str, Any]:
    from mmengine.config import Config

    try:
        return _flatten(Config.fromstring(text, ".py").to_dict())
    except Exception as exc:  # mmengine raises many kinds on a malformed text
        raise ConfigError(f"{where}: the training config recorded in {METRICS_FILE} does not parse ({exc}); "
                          "re-test the checkpoint with tools/test.py.") from None


def load_run(path: str | Path, metric: str | None = None) -> Run | None:
    """The run in ``path``; ``None`` if it has no usable ``metrics.json`` (a failed or unfinished run).

    Args:
        metric: ``"mIoU"`` or ``"mAP"``; default: whichever the metrics hold (mIoU if both).

    Raises:
        UserError: the metrics do not record the config, training seed or training config (a test of a merged or
            converted checkpoint, or by an older tools/test.py).
    """
    path = Path(path)
    try:
        metrics = json.loads((path / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict):
        return None
    metric = metric or ("mIoU" if "mean/mIoU" in metrics else "mAP")
    scores = {key.rsplit("/", 1)[0]: float(value) for key, value in metrics.items()
              if key.endswith(f"/{metric}") and key.count("/") == 1 and isinstance(value, (int, float))}
    if "mean" not in scores:
        return None  # tested, but not with a per-domain metric of this kind: nothing to compare
    missing = [key for key in ("config", "seed", "train_config") if metrics.get(key) is None]
    if missing:
        raise UserError(f"{path / METRICS_FILE} records no {' or '.join(missing)} (a test by an older tools/test.py, "
                        "or of a checkpoint without mmengine's meta): re-test the training checkpoint with "
                        "tools/test.py.")
    return Run(path=path, method=Path(metrics["config"]).stem, seed=int(metrics["seed"]), metric=metric,
               scores=scores, config=_parse_config(metrics["train_config"], path))


def load_runs(paths: Sequence[Path], metric: str | None = None,
              skip_failed: bool = False) -> tuple[list[Run], list[Path]]:
    """The runs in ``paths`` and the folders without results (left out only with ``skip_failed``).

    Raises:
        UserError: a folder has no results and ``skip_failed`` is off; two runs of a method have the same seed.
    """
    runs, failed = [], []
    for path in paths:
        run = load_run(path, metric)
        if run is None:
            failed.append(path)
        else:
            runs.append(run)
    if failed and not skip_failed:
        raise UserError(f"no {metric or 'mIoU/mAP'} results ({METRICS_FILE}) in {', '.join(map(str, failed))}: a "
                        "failed or unfinished run (see its logs); rerun it, or pass --skip-failed to leave it out "
                        "(it is then named under the table).")
    if not runs:
        raise UserError(f"none of the {len(paths)} run folders has results; test the checkpoints with "
                        "tools/test.py first.")
    seen: dict[tuple[str, int], Path] = {}
    for run in runs:
        earlier = seen.setdefault((run.method, run.seed), run.path)
        if earlier != run.path:
            raise UserError(f"two runs of {run.method} with seed {run.seed}: {earlier} and {run.path}; keep one "
                            "(they would count twice).")
    return runs, failed


# ------------------------------------------------------------------------------------------------- like runs
def _allowed(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def _differing(first: Run, second: Run, allowed: Sequence[str]) -> list[str]:
    keys = set(first.config) | set(second.config)
    return sorted(key for key in keys if not _allowed(key, allowed)
                  and first.config.get(key, "<unset>") != second.config.get(key, "<unset>"))


def check_alike(runs: Sequence[Run], allow: Sequence[str] = ()) -> None:
    """Refuse runs whose training configs differ in more than the method and the seed.

    Runs of one method may differ only in :data:`IGNORED_FIELDS` (the seed, paths); runs of different methods also
    in :data:`METHOD_FIELDS`. ``allow`` names further config keys (or key prefixes) that may differ.

    Raises:
        UserError: naming the first differing fields with their values, the two runs and what to do.
    """
    first_of_method: dict[str, Run] = {}
    for run in runs:
        first_of_method.setdefault(run.method, run)
    for run in runs:
        # Against the first run of its own method, then (method fields allowed) against the first run of all.
        for other, allowed in ((first_of_method[run.method], (*IGNORED_FIELDS, *allow)),
                               (runs[0], (*IGNORED_FIELDS, *METHOD_FIELDS, *allow))):
            fields = _differing(other, run, allowed) if other is not run else []
            if fields:
                shown = "; ".join(f"`{key}`: {other.config.get(key, '<unset>')!r} vs "
                                  f"{run.config.get(key, '<unset>')!r}" for key in fields[:3])
                more = f" and {len(fields) - 3} more" if len(fields) > 3 else ""
                kind = "runs of one method" if other.method == run.method else "runs"
                raise UserError(f"unlike {kind}: {other.path} and {run.path} differ in {shown}{more}, not only in "
                                f"the method and seed; compare like runs, or pass --allow {fields[0]} (once per "
                                "field) if the difference is part of what you compare.")


# ------------------------------------------------------------------------------------------------- statistics
def interval(values: Sequence[float]) -> Interval:
    """Mean and 95 % confidence half-width ``t_{0.975, n-1} · s / √n`` of ``values`` (undefined for one value)."""
    from scipy import stats

    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, None, n)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n), n)


def paired_difference(values: Mapping[int, float], reference: Mapping[int, float]) -> Difference:
    """``values`` minus ``reference``, paired by seed (both must hold the same seeds): the mean difference with its
    95 % interval and the two-sided paired t-test's p-value (``None`` for fewer than two pairs, or when every
    difference is the same, where the test is undefined)."""
    from scipy import stats

    if set(values) != set(reference):
        raise ValueError(f"paired seeds must match, got {sorted(values)} and {sorted(reference)}.")
    seeds = sorted(values)
    differences = [values[seed] - reference[seed] for seed in seeds]
    spread = interval(differences)
    p_value = None
    if len(seeds) >= 2 and len(set(differences)) > 1:
        p_value = float(stats.ttest_rel([values[s] for s in seeds], [reference[s] for s in seeds]).pvalue)
    return Difference(spread, p_value)


def _short_names(methods: Sequence[str]) -> dict[str, str]:
    """Config names without the part all share (``soma_dinov2-demo_scenes-64`` -> ``soma``)."""
    if len(methods) < 2:
        return {m: m for m in methods}
    prefix = len(_common_prefix(methods))
    suffix = len(_common_prefix([m[::-1] for m in methods]))
    short = {m: m[prefix:len(m) - suffix].strip("_-") for m in methods}
    return short if all(short.values()) and len(set(short.values())) == len(methods) else {m: m for m in methods}


def _common_prefix(names: Sequence[str]) -> str:
    first, last = min(names), max(names)
    length = next((i for i, (a, b) in enumerate(zip(first, last)) if a != b), min(len(first), len(last)))
    return first[:length]


def compare(runs: Sequence[Run], reference: str | None = None, seeds: Sequence[int] | None = None,
            allow: Sequence[str] = ()) -> Comparison:
    """Group ``runs`` by method and compute the intervals and the differences to ``reference``.

    Args:
        reference: the method the others are compared with (its config name, or the short name the table shows).
        seeds: use only these seeds; every method must have each of them. Default: the seeds of the runs, which
            must be the same for every method.
        allow: config keys that may differ besides the method and seed (:func:`check_alike`).

    Raises:
        UserError: unlike runs, seeds that not every method has, a seed asked for that a method lacks, an unknown
            reference, or runs scored with different metrics or on different domains.
    """
    check_alike(runs, allow)
    metrics = sorted({run.metric for run in runs})
    if len(metrics) > 1:
        raise UserError(f"the runs are scored with different metrics ({', '.join(metrics)}); compare runs of one "
                        "task, or pass --metric.")
    methods = list(dict.fromkeys(run.method for run in runs))
    short = _short_names(methods)
    by_method = {m: {run.seed: run for run in runs if run.method == m} for m in methods}
    wanted = set(seeds) if seeds is not None else set().union(*(set(found) for found in by_method.values()))
    lacking = {short[m]: sorted(wanted - set(found)) for m, found in by_method.items()}
    lacking = {m: missing for m, missing in lacking.items() if missing}
    if lacking:
        named = "; ".join(f"{m} has no seed {', '.join(map(str, missing))}" for m, missing in lacking.items())
        if seeds is not None:
            raise UserError(f"missing runs: {named}; train and test them, or leave them out of --seeds.")
        common = sorted(set.intersection(*(set(found) for found in by_method.values())))
        advice = f"pass --seeds {' '.join(map(str, common))} to compare only the seeds every method has" if common \
            else "no seed is common to all methods"
        raise UserError(f"seeds not matched across methods: {named}; run the missing seeds, or {advice}.")
    by_method = {m: {s: found[s] for s in sorted(wanted)} for m, found in by_method.items()}
    domain_sets = {tuple(sorted(run.scores)) for found in by_method.values() for run in found.values()}
    if len(domain_sets) > 1:
        raise UserError(f"the runs are scored on different domains ({' vs '.join(map(str, domain_sets))}); "
                        "compare runs tested on the same test sets.")
    first = runs[0]
    target_domains = [first.config[key] for key in sorted(first.config, key=_index_order)
                      if re.fullmatch(r"test_evaluator(\.\d+)?\.mean_over\.\d+", key)]
    domains = [d for d in first.scores if d != "mean"] + ["mean"]
    intervals = {short[m]: {d: interval([run.scores[d] for _, run in sorted(found.items())]) for d in domains}
                 for m, found in by_method.items()}
    differences: dict[str, Difference] = {}
    if reference is not None:
        names = {**{m: short[m] for m in methods}, **{short[m]: short[m] for m in methods}}
        if reference not in names:
            raise UserError(f"--reference {reference!r} is not among the compared methods "
                            f"({', '.join(short[m] for m in methods)}); name one of them.")
        reference = names[reference]
        target = {short[m]: {s: run.scores["mean"] for s, run in found.items()} for m, found in by_method.items()}
        differences = {m: paired_difference(values, target[reference]) for m, values in target.items()
                       if m != reference}
    used_seeds = sorted(next(iter(by_method.values())))
    return Comparison(metrics[0], domains, target_domains, used_seeds, reference, intervals, differences)


def _index_order(key: str) -> tuple[str, int]:
    head, _, index = key.rpartition(".")
    return (head, int(index)) if index.isdigit() else (key, -1)


# ------------------------------------------------------------------------------------------------- outputs
def format_markdown(comparison: Comparison) -> str:
    """The comparison as a markdown table with a legend of how each number is computed."""
    c = comparison
    columns = [d if d != "mean" else "target mean" for d in c.domains]
    header = ["method", "seeds", *columns]
    if c.reference:
        header += [f"Δ target mean vs {c.reference}", "p (paired t)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, per_domain in c.intervals.items():
        cells = [method, str(len(c.seeds)), *(str(per_domain[d]) for d in c.domains)]
        if c.reference:
            difference = c.differences.get(method)
            if difference is None:
                cells += ["reference", "–"]
            else:
                spread = difference.interval
                text = f"{spread.mean:+.1f}" + (f" ± {spread.half_width:.1f}" if spread.half_width is not None
                                                else " (no CI)")
                p = difference.p_value
                cells += [text, "undefined" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")]
        lines.append("| " + " | ".join(cells) + " |")
    targets = ", ".join(c.target_domains) if c.target_domains else "the config's `mean_over`"
    lines += ["", f"{c.metric} (%) over seeds {', '.join(map(str, c.seeds))}: mean ± half-width of the 95 % "
              "confidence interval, t(0.975, n-1)·s/√n (undefined for one seed). Target mean: over " + targets + "."]
    if c.reference:
        lines.append(f"Δ: per-seed differences of the target mean to {c.reference} (seeds paired by "
                     "`randomness.seed`), their mean ± 95 % interval; p: two-sided paired t-test over the seeds.")
    if c.skipped:
        lines.append(f"Left out (no results): {', '.join(map(str, c.skipped))}.")
    return "\n".join(lines)


def plot_comparison(comparison: Comparison, out: str | Path) -> Path:
    """Per-domain bars (and the target mean) with 95 % error bars, one colour per method, saved as PNG."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global backend switch

    c = comparison
    methods = list(c.intervals)
    width = 0.8 / len(methods)
    figure = Figure(figsize=(1.2 + 1.3 * len(c.domains), 3.6))
    axis = figure.subplots()
    for index, method in enumerate(methods):
        values = [c.intervals[method][d] for d in c.domains]
        positions = [x + (index - (len(methods) - 1) / 2) * width for x in range(len(c.domains))]
        errors = [v.half_width if v.half_width is not None else 0.0 for v in values]
        axis.bar(positions, [v.mean for v in values], width, yerr=errors if len(c.seeds) > 1 else None,
                 capsize=2, label=method, color=f"C{index}")
    axis.set_xticks(range(len(c.domains)), [d if d != "mean" else "target mean" for d in c.domains])
    axis.set_ylabel(f"{c.metric} (%)")
    interval_note = "95 % CI" if len(c.seeds) > 1 else "one seed, no CI"
    axis.set_title(f"{c.metric} over {len(c.seeds)} seeds ({interval_note})", fontsize=10)
    axis.legend(fontsize=8, ncols=min(len(methods), 6), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    out = Path(out)
    with atomic_path(out) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    return out


def compare_to_folder(patterns: Sequence[str | Path], out: str | Path, reference: str | None = None,
                      seeds: Sequence[int] | None = None, metric: str | None = None, allow: Sequence[str] = (),
                      skip_failed: bool = False, force: bool = False) -> tuple[str, list[Path]]:
    """Find and compare the runs, write ``comparison.md`` and ``comparison.png`` to ``out``.

    Returns:
        The markdown table and the files written.

    Raises:
        UserError: see :func:`find_runs`, :func:`load_runs`, :func:`compare`; an ``out`` holding the outputs of an
            earlier comparison without ``force``.
    """
    paths = find_runs(patterns)
    check_output_dir(out, paths, OUTPUTS, force=force)
    runs, failed = load_runs(paths, metric, skip_failed)
    comparison = compare(runs, reference, seeds, allow)
    comparison.skipped = failed
    table = format_markdown(comparison)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / OUTPUTS[0], table + "\n")
    return table, [out / OUTPUTS[0], plot_comparison(comparison, out / OUTPUTS[1])]
