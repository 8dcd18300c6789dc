"""compare_runs on fake test runs with known metrics: the interval and paired-test arithmetic against values worked
out by hand, and the refusals (unlike runs, unmatched or missing seeds, failed runs, an unknown reference)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from soma.analysis.compare_runs import compare, compare_to_folder, find_runs, interval, load_runs
from soma.utils import UserError

TRAIN_CONFIG = """
model = dict(backbone=dict(type="DINOv2", peft={peft}), decode_head=dict(num_classes=19))
optim_wrapper = dict(optimizer=dict(type="AdamW", lr=0.001))
train_cfg = dict(max_iters={iters})
randomness = dict(seed={seed})
work_dir = "{work_dir}"
test_evaluator = dict(type="DomainIoUMetric", mean_over=["night", "fog"])
"""
PEFT = {"soma": 'dict(type="SoMA", r=8)', "frozen": "None"}

# Per seed: (source, night, fog) mIoU; the target mean is over night and fog.
SCORES = {
    "soma": {0: (70.0, 40.0, 42.0), 1: (72.0, 42.0, 44.0), 2: (74.0, 44.0, 46.0)},  # target means 41, 43, 45
    "frozen": {0: (60.0, 39.0, 41.0), 1: (61.0, 40.0, 42.0), 2: (62.0, 41.0, 43.0)},  # target means 40, 41, 42
}


def write_run(folder: Path, method: str, seed: int, scores: tuple[float, float, float], iters: int = 100,
              peft: str | None = None) -> Path:
    """A test run's work dir as tools/test.py leaves it: metrics.json with the scores and the training record."""
    source, night, fog = scores
    metrics = {"source/mIoU": source, "night/mIoU": night, "fog/mIoU": fog, "mean/mIoU": (night + fog) / 2,
               "source/aAcc": 90.0, "checkpoint": str(folder / "iter_100.pth"), "tta": False,
               "config": f"configs/demo/{method}_dinov2-demo_scenes-64.py", "seed": seed,
               "train_config": TRAIN_CONFIG.format(peft=peft or PEFT[method], iters=iters, seed=seed,
                                                   work_dir=folder)}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def study(tmp_path) -> Path:
    for method, per_seed in SCORES.items():
        for seed, scores in per_seed.items():
            write_run(tmp_path / "runs" / method / f"seed_{seed}", method, seed, scores)
    return tmp_path / "runs"


def load(root: Path, **kwargs):
    runs, _ = load_runs(find_runs([str(root / "*" / "seed_*")]), **kwargs)
    return runs


# t(0.975, 2) in closed form: the t distribution with 2 degrees of freedom has F(t) = 1/2 + t / (2 sqrt(2 + t²)),
# so F(q) = 0.975 gives q² = 2 · 0.95² / (1 - 0.95²).
T_975_DF2 = math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2))  # 4.3026527...


def test_interval_matches_hand_computed_values(study):
    result = compare(load(study), reference="soma")
    assert result.metric == "mIoU" and result.seeds == [0, 1, 2]
    assert result.domains == ["source", "night", "fog", "mean"] and result.target_domains == ["night", "fog"]
    night = result.intervals["soma"]["night"]  # 40, 42, 44: mean 42, s = 2
    assert night.n == 3 and night.mean == pytest.approx(42.0)
    assert night.half_width == pytest.approx(T_975_DF2 * 2 / math.sqrt(3), abs=1e-9)
    assert night.half_width == pytest.approx(4.968275, abs=1e-6)
    target = result.intervals["frozen"]["mean"]  # 40, 41, 42: mean 41, s = 1
    assert target.mean == pytest.approx(41.0) and target.half_width == pytest.approx(2.484138, abs=1e-6)


def test_paired_difference_matches_hand_computed_values(study):
    result = compare(load(study), reference="soma")
    assert set(result.differences) == {"frozen"}  # the reference is not compared with itself
    difference = result.differences["frozen"]
    # Per seed, frozen - soma target means: -1, -2, -3. Mean -2, s = 1, so t = -2 / (1 / sqrt 3) = -sqrt 12 and,
    # with 2 degrees of freedom, p = 2 (1 - F(|t|)) = 1 - |t| / sqrt(2 + t²) = 1 - sqrt(12 / 14).
    assert difference.interval.mean == pytest.approx(-2.0)
    assert difference.interval.half_width == pytest.approx(T_975_DF2 / math.sqrt(3), abs=1e-9)
    assert difference.p_value == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-9)
    assert difference.p_value == pytest.approx(0.0741799, abs=1e-7)


def test_seeds_are_paired_by_seed_not_by_order(tmp_path):
    # The same numbers as the study fixture, written in another order: the pairs (and the p-value) stay the same.
    for method, per_seed in SCORES.items():
        for position, (seed, scores) in enumerate(sorted(per_seed.items(), reverse=method == "frozen")):
            write_run(tmp_path / method / f"run_{position}", method, seed, scores)
    result = compare(load_runs(find_runs([tmp_path / m / f"run_{i}" for m in SCORES for i in range(3)]))[0],
                     reference="soma")
    assert result.differences["frozen"].p_value == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-9)


def test_one_seed_has_no_interval(tmp_path):
    assert interval([5.0]).half_width is None and "no CI" in str(interval([5.0]))
    write_run(tmp_path / "soma", "soma", 0, SCORES["soma"][0])
    write_run(tmp_path / "frozen", "frozen", 0, SCORES["frozen"][0])
    result = compare(load_runs(find_runs([tmp_path / "soma", tmp_path / "frozen"]))[0], reference="frozen")
    assert result.differences["soma"].p_value is None  # one pair: no test
    table, _ = compare_to_folder([tmp_path / "soma", tmp_path / "frozen"], tmp_path / "out", reference="frozen")
    assert "41.0 (n=1: no CI)" in table and "± 0.0" not in table and "undefined" in table


def test_table_and_png_are_written(study, tmp_path):
    table, written = compare_to_folder([str(study / "*" / "seed_*")], tmp_path / "out", reference="soma")
    assert written == [tmp_path / "out/comparison.md", tmp_path / "out/comparison.png"]
    assert "| frozen | 3 | 61.0 ± 2.5 | 40.0 ± 2.5 | 42.0 ± 2.5 | 41.0 ± 2.5 | -2.0 ± 2.5 | 0.074 |" in table
    assert "| soma | 3 |" in table and "reference" in table
    assert (tmp_path / "out/comparison.md").read_text().strip() == table
    assert (tmp_path / "out/comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="pass --force"):
        compare_to_folder([str(study / "*" / "seed_*")], tmp_path / "out")


def test_unlike_runs_are_refused_unless_allowed(study):
    write_run(study / "frozen" / "seed_3", "frozen", 3, SCORES["frozen"][0], iters=200)
    write_run(study / "soma" / "seed_3", "soma", 3, SCORES["soma"][0], iters=200)
    with pytest.raises(UserError, match=r"differ in `train_cfg.max_iters`: 100 vs 200.*--allow train_cfg.max_iters"):
        compare(load(study))
    assert compare(load(study), allow=["train_cfg.max_iters"]).seeds == [0, 1, 2, 3]


def test_one_method_with_two_settings_is_refused(study):
    # Method fields may differ between methods, not between the seeds of one method.
    write_run(study / "soma" / "seed_3", "soma", 3, SCORES["soma"][0], peft='dict(type="SoMA", r=16)')
    write_run(study / "frozen" / "seed_3", "frozen", 3, SCORES["frozen"][0])
    with pytest.raises(UserError, match=r"unlike runs of one method: .* `model.backbone.peft.r`: 8 vs 16"):
        compare(load(study))


def test_unmatched_seeds_are_named(study):
    write_run(study / "soma" / "seed_5", "soma", 5, SCORES["soma"][0])
    with pytest.raises(UserError, match=r"frozen has no seed 5; .*--seeds 0 1 2"):
        compare(load(study), reference="soma")
    assert compare(load(study), reference="soma", seeds=[0, 1, 2]).seeds == [0, 1, 2]
    with pytest.raises(UserError, match=r"missing runs: frozen has no seed 5"):
        compare(load(study), seeds=[0, 5])


def test_duplicate_seed_is_refused(study):
    write_run(study / "soma" / "copy", "soma", 1, SCORES["soma"][1])
    with pytest.raises(UserError, match="two runs of soma_dinov2-demo_scenes-64 with seed 1"):
        load_runs(find_runs([study / "soma" / "seed_1", study / "soma" / "copy"]))


def test_failed_runs_are_named(study, tmp_path):
    (study / "soma" / "seed_9").mkdir()  # a run that never wrote metrics
    with pytest.raises(UserError, match=r"no mIoU/mAP results .* in .*soma/seed_9: a failed or unfinished run"):
        load(study)
    table, _ = compare_to_folder([str(study / "*" / "seed_*")], tmp_path / "out", skip_failed=True)
    assert f"Left out (no results): {study / 'soma' / 'seed_9'}" in table


def test_run_without_a_training_record_is_refused(tmp_path):
    metrics_file = write_run(tmp_path / "old", "soma", 0, SCORES["soma"][0]) / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps(dict(metrics, seed=None)))  # a checkpoint without mmengine's meta
    with pytest.raises(UserError, match=r"records no seed .* re-test the training checkpoint"):
        load_runs(find_runs([tmp_path / "old"]))


def test_no_runs_and_unknown_reference(study, tmp_path):
    with pytest.raises(UserError, match="no run folders found in '.*nothing/\\*'"):
        find_runs([str(tmp_path / "nothing" / "*")])
    with pytest.raises(UserError, match="no run folders found in '.*soma/seed_7'"):  # one typo among good runs
        find_runs([study / "soma" / "seed_0", study / "soma" / "seed_7"])
    with pytest.raises(UserError, match=r"--reference 'lora' is not among the compared methods \(frozen, soma\)"):
        compare(load(study), reference="lora")


def test_command_line_ends_user_errors_in_one_line(study, tmp_path, capsys):
    from tools.analysis.compare_runs import main

    write_run(study / "soma" / "seed_5", "soma", 5, SCORES["soma"][0])
    with pytest.raises(SystemExit) as exit_info:
        main([str(study / "*" / "seed_*"), "--out", str(tmp_path / "out"), "--reference", "soma"])
    message = str(exit_info.value.code)
    assert message.startswith("error: seeds not matched across methods") and "\n" not in message
    main([str(study / "*" / "seed_*"), "--out", str(tmp_path / "out"), "--reference", "soma", "--seeds", "0", "1"])
    assert "| frozen | 2 |" in capsys.readouterr().out
