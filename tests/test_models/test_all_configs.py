"""Every config under configs/ loads, names only registered types and builds its model at real size (meta device).

The benchmark configs also carry the published setting: per-dataset test resolutions, domain-keyed evaluation,
the published number in their header.
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from soma.config import check_config_types
from soma.apis.testing import evaluation_resolutions

from ..conftest import REPO

pytestmark = pytest.mark.slow  # every published config loaded and built (22 s); tests/test_models/test_configs.py
# builds the tiny ones in the fast tier

CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.py") if "_base_" not in p.parts)
SEGMENTATION = [p for p in CONFIGS if p.parent.name in ("soma", "rein") and "dwd" not in p.name]
# Test resolution per domain as released: BDD100K at 1280x720 in the 512 configs and 2048x1024 in the 1024 ones.
TEST_SCALE = {"citys": (2048, 1024), "bdd": (1280, 720), "map": (2048, 1024), **{
    f"acdc-{c}": (1920, 1080) for c in ("fog", "night", "rain", "snow")}}


def build_on_meta(cfg: Config) -> torch.nn.Module:
    scope = cfg.get("default_scope", "mmseg")
    registry = __import__(f"{scope}.registry", fromlist=["MODELS"]).MODELS
    if cfg.model.get("backbone") is not None:
        cfg.model.backbone.init_cfg = None  # structure only: no weights are read
    with DefaultScope.overwrite_default_scope(scope), torch.device("meta"):
        return registry.build(cfg.model)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_loads_and_builds(path: Path):
    cfg = Config.fromfile(str(path))
    check_config_types(cfg)
    model = build_on_meta(cfg)
    assert any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("path", SEGMENTATION, ids=[p.name for p in SEGMENTATION])
def test_benchmark_config_follows_the_published_setting(path: Path):
    cfg = Config.fromfile(str(path))
    header = path.read_text().splitlines()[:4]
    assert any(line.startswith(("# Published:", "# Baseline:")) or "No published" in line for line in header)
    targets = cfg.test_dataloader.dataset.datasets
    domains = [Config(dict(d)).get("domain") or _default_domain(d) for d in targets]
    assert len(set(domains)) == len(domains) and cfg.test_evaluator.type == "DomainIoUMetric"
    scales = evaluation_resolutions(cfg)
    for domain, scale in zip(domains, scales):
        expected = (2048, 1024) if "1024" in path.name and domain == "bdd" else TEST_SCALE[domain]
        assert tuple(scale) == expected, (domain, scale)
    for dataset in [*targets, *_sources(cfg)]:
        assert "domain" in dataset.pipeline[-1].meta_keys  # results are keyed by the dataset, not the path
    crop = 1024 if "1024" in path.name else 512
    assert cfg.model.test_cfg.mode == "slide" and tuple(cfg.model.test_cfg.crop_size) == (crop, crop)
    assert cfg.train_dataloader.batch_size == (8 if "citys2" in path.name or "gsuc16" in path.name else 4)
    annealed = any(s.get("param_name") == "weight_decay" for s in cfg.param_scheduler)
    # the released baselines and Rein's recipe anneal no decay
    assert annealed == (path.parent.name == "soma" and not path.name.startswith(("frozen_", "full_")))


def _sources(cfg: Config) -> list:
    dataset = cfg.train_dataloader.dataset
    return list(dataset.datasets) if dataset.type == "ConcatDataset" else [dataset]


def _default_domain(dataset: dict) -> str:
    from mmseg.registry import DATASETS

    cls = DATASETS.get(dataset["type"])
    return f"acdc-{dataset['condition']}" if "condition" in dataset else cls.DOMAIN
