"""Reading dataset configs: the datasets inside wrappers, and their test pipeline for unlabelled images."""
from __future__ import annotations

from typing import Any

# Pipeline steps that read ground truth, which a bare image does not have.
ANNOTATION_STEPS = ("LoadAnnotations", "mmseg.LoadAnnotations", "mmdet.LoadAnnotations")


def leaf_datasets(dataset: Any) -> list[dict]:
    """Every leaf dataset config under a dataset config: itself, or the members of a ``ConcatDataset`` (and of
    wrappers holding ``dataset``), in order. Anything that is not a dict gives ``[]``."""
    if not isinstance(dataset, dict):
        return []
    for nested in ("datasets", "dataset"):
        inner = dataset.get(nested)
        if isinstance(inner, (list, tuple)):
            return [leaf for item in inner for leaf in leaf_datasets(item)]
        if isinstance(inner, dict):
            return leaf_datasets(inner)
    return [dataset]


def image_only_pipeline(pipeline: list[dict]) -> list[dict]:
    """``pipeline`` for images without labels: annotation loading dropped, an image loader first."""
    steps = [dict(step) for step in pipeline if step.get("type") not in ANNOTATION_STEPS]
    if not steps or "LoadImage" not in str(steps[0].get("type")):
        steps.insert(0, dict(type="LoadImageFromFile"))
    return steps
