"""The head's ``num_classes`` checked against the classes of the dataset(s).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mmengine.config import Config

from .datasets import leaf_datasets
from soma.utils.errors import ConfigError


# ---------------------------------------------------------------------------------------------- classes
def _dataset_classes(dataset: Mapping[str, Any], scope: str) -> tuple[str, int] | None:
    """``(dataset type name, number of classes)`` of a dataset config, or ``None`` if it cannot be told."""
    import mmdet.registry
    import mmseg.registry

    classes = (dataset.get("metainfo") or {}).get("classes")
    kind = dataset.get("type")
    if classes is None:
        registry = mmdet.registry.DATASETS if scope == "mmdet" else mmseg.registry.DATASETS
        cls = registry.get(kind) if isinstance(kind, str) else kind
        classes = (getattr(cls, "METAINFO", None) or {}).get("classes") if cls is not None else None
    if not classes:
        return None
    return str(getattr(kind, "__name__", kind)), len(classes)


def _heads(model: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name in ("decode_head", "auxiliary_head", "bbox_head"):
        heads = model.get(name)
        for index, head in enumerate(heads if isinstance(heads, (list, tuple)) else [heads]):
            if isinstance(head, Mapping) and isinstance(head.get("num_classes"), int):
                yield (f"model.{name}[{index}]" if isinstance(heads, (list, tuple)) else f"model.{name}"), head


def check_num_classes(cfg: Config) -> None:
    """The heads' ``num_classes`` (and Mask2Former's ``class_weight`` length) against the datasets' classes.

    A head with more classes than the dataset trains and evaluates without an error but scores wrong numbers
    (predicted ids the dataset does not have); one with fewer fails deep in the loss.

    Raises:
        ConfigError: a head's class count differs from a train/val/test dataset's.
    """
    model = cfg.get("model")
    if not isinstance(model, Mapping):
        return
    scope = cfg.get("default_scope", "mmseg")
    for key, head in _heads(model):
        count = head["num_classes"]
        for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
            loader_cfg = cfg.get(loader)
            for dataset in leaf_datasets(loader_cfg.get("dataset") if isinstance(loader_cfg, Mapping) else None):
                found = _dataset_classes(dataset, scope)
                if found and found[1] != count:
                    raise ConfigError(f"{key}.num_classes is {count} but the {loader} dataset ({found[0]}) has "
                                      f"{found[1]} classes; set `{key}.num_classes={found[1]}` (predictions of "
                                      "ids the dataset does not have would be scored as wrong numbers).")
        loss = head.get("loss_cls")
        weights = loss.get("class_weight") if isinstance(loss, Mapping) else None
        if "Mask2Former" in str(head.get("type")) and isinstance(weights, (list, tuple)) \
                and len(weights) != count + 1:
            raise ConfigError(f"{key}.loss_cls.class_weight has {len(weights)} entries but Mask2Former needs "
                              f"num_classes + 1 = {count + 1} (one per class and the last for 'no object').")
