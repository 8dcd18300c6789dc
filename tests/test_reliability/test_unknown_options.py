"""Unknown options of SoMA's metrics, hooks and datasets, and unknown `mean_over` domains, are refused by name
when the config loads, with the closest valid names (mmseg's `IoUMetric` used to drop them without a word)."""
from __future__ import annotations

import pytest
from mmengine.config import Config

from soma.peft import SoMAConfig
from soma.config import check_component_options, check_mean_over
from soma.utils import ConfigError
from soma.config.options import accepted_options, soma_components

from ..conftest import REPO

DEMO = REPO / "configs/demo/soma_dinov2-demo_scenes-64.py"
SEGMENTATION_DATASETS = ["DGSegDataset", "DGCityscapesDataset", "DGGTA5Dataset", "DGSynthiaDataset",
                         "DGUrbanSynDataset", "DGBDD100KDataset", "DGMapillaryDataset", "DGACDCDataset"]
OURS = {"metric": ["DomainIoUMetric", "DomainVOCMetric"],
        "hook": ["WeightDecayLoggerHook", "RandomStateHook", "LabelSizeCheckHook", "MergeAdaptersHook",
                 "FrozenAwareEMAHook"],
        "dataset": SEGMENTATION_DATASETS + ["DWDDataset"]}


def test_every_metric_hook_and_dataset_we_define_is_checked():
    found = {}
    for name, (kind, _) in soma_components().items():
        found.setdefault(kind, []).append(name)
    assert {kind: sorted(names) for kind, names in found.items()} == {k: sorted(v) for k, v in OURS.items()}


@pytest.mark.parametrize("name", [name for names in OURS.values() for name in names])
def test_an_unknown_option_of_each_component_is_refused_with_its_key_path(name):
    check_component_options(dict(custom=[dict(type=name)]))
    with pytest.raises(ConfigError, match=rf"unknown {name} option\(s\) \['bogus_option'\] at `custom\[0\]`; "
                                          r"valid options are \["):
        check_component_options(dict(custom=[dict(type=name, bogus_option=1)]))


def test_options_handed_on_to_mmseg_and_mmdet_count():
    datasets = accepted_options(soma_components()["DGACDCDataset"][1])
    assert {"condition", "domain", "subset_ratio", "data_root", "pipeline", "test_mode"} <= set(datasets)
    assert {"domain", "split", "data_root", "pipeline", "filter_cfg", "backend_args"} <= set(
        accepted_options(soma_components()["DWDDataset"][1]))
    assert accepted_options(soma_components()["MergeAdaptersHook"][1]) == ("safe_merge",)
    assert accepted_options(soma_components()["WeightDecayLoggerHook"][1]) == ()
    check_component_options(dict(custom_hooks=[dict(type="MergeAdaptersHook", priority="LOW", safe_merge=True)]))


def test_the_domain_metric_no_longer_drops_unknown_keywords():
    from soma.evaluation import DomainIoUMetric

    with pytest.raises(TypeError, match="mean_ovr"):
        DomainIoUMetric(mean_ovr=["night"])


def test_misspelt_metric_option_on_the_command_line_is_refused_before_anything_is_built(tmp_path):
    from soma.apis.testing import main

    argv = [str(DEMO), str(tmp_path / "no.pth"), "--work-dir", str(tmp_path / "work"), "--cfg-options"]
    with pytest.raises(SystemExit, match=r"error: unknown DomainIoUMetric option\(s\) \['mean_ovr'\] at "
                                         r"`test_evaluator`; valid options are \[.*closest to 'mean_ovr': 'mean_over'"):
        main(argv + ["test_evaluator.mean_ovr=[night]"])
    with pytest.raises(SystemExit, match=r"unknown `test_evaluator.mean_over` domain\(s\) \['nigth'\]; valid domains "
                                         r"are \['source', 'night', 'fog', 'palette'\].*closest to 'nigth': 'night'"):
        main(argv + ["test_evaluator.mean_over=[nigth]"])
    assert not (tmp_path / "work").exists()


def test_mean_over_is_checked_against_the_datasets_domains():
    cfg = Config.fromfile(str(DEMO))
    check_mean_over(cfg)
    cfg.test_evaluator.mean_over = "night"  # a string would be averaged character by character
    with pytest.raises(ConfigError, match=r"`test_evaluator.mean_over` must be a list .*write \['night'\]"):
        check_mean_over(cfg)
    acdc = Config.fromfile(str(REPO / "configs/soma/soma_dinov2-l_citys2acdc-1024.py"))
    check_mean_over(acdc)  # domains from `condition`; the group `acdc` may be averaged too
    acdc.val_evaluator.mean_over = ["acdc", "acdc-fogg"]
    with pytest.raises(ConfigError, match=r"\['acdc-fogg'\].*'acdc-night'.*'acdc'\] \(the val_dataloader datasets' "
                                          r"domains and the metric's groups\); closest to 'acdc-fogg': 'acdc-fog'"):
        check_mean_over(acdc)
    dwd = Config.fromfile(str(REPO / "configs/soma/codino_dinov2-l_soma_dwd.py"))
    dwd.test_evaluator.mean_over = ["night_rainy", "dusk_rain"]
    with pytest.raises(ConfigError, match="closest to 'dusk_rain': 'dusk_rainy'"):
        check_mean_over(dwd)


def test_the_released_configs_pass():
    for config in sorted((REPO / "configs").rglob("*.py")):
        if "_base_" not in config.parts:
            cfg = Config.fromfile(str(config))
            check_component_options(cfg)
            check_mean_over(cfg)


def test_adapter_options_name_the_closest_valid_one_through_the_same_helper():
    with pytest.raises(ValueError, match=r"unknown SoMA option\(s\) \['start_blok'\]; valid options are \[.*\]; "
                                         r"closest to 'start_blok': 'start_block'"):
        SoMAConfig.from_dict(dict(start_blok=8))
