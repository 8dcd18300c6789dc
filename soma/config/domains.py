"""Per-domain metrics: they need datasets whose samples carry their ``domain``, and the domains they average must be
domains of those datasets.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmengine.config import Config

from .datasets import leaf_datasets
from soma.utils.errors import ConfigError


# ---------------------------------------------------------------------------------------------- domains
# Metrics that score each sample by ``data_sample.metainfo["domain"]``.
DOMAIN_METRICS = ("DomainIoUMetric", "DomainVOCMetric")


def _dataset_class(dataset: Mapping[str, Any], scope: str) -> type | None:
    import mmdet.registry
    import mmseg.registry

    kind = dataset.get("type")
    if not isinstance(kind, str):
        return kind if isinstance(kind, type) else None
    kind_scope, _, bare = kind.rpartition(".")
    registry = mmdet.registry.DATASETS if (kind_scope or scope) == "mmdet" else mmseg.registry.DATASETS
    return registry.get(bare if kind_scope in ("mmseg", "mmdet") else kind)


def check_domain_datasets(cfg: Config) -> None:
    """A per-domain metric (``DomainIoUMetric``, ``DomainVOCMetric``) over datasets that tag their samples.

    Those metrics read each sample's ``domain``, which SoMA's datasets write (:mod:`soma.datasets.domain`); over
    any other dataset a run would train for its whole schedule and fail at the first evaluation.

    Raises:
        ConfigError: ``val_evaluator``/``test_evaluator`` is a per-domain metric and a dataset of
            ``val_dataloader``/``test_dataloader`` does not derive from ``soma.datasets.DomainDatasetMixin``.
    """
    from soma.datasets.domain import DomainDatasetMixin

    scope = cfg.get("default_scope", "mmseg")
    for loader, evaluator_key in (("val_dataloader", "val_evaluator"), ("test_dataloader", "test_evaluator")):
        evaluators = cfg.get(evaluator_key)
        evaluators = evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]
        metrics = [str(e.get("type")).rpartition(".")[2] for e in evaluators if isinstance(e, Mapping)]
        metric = next((m for m in metrics if m in DOMAIN_METRICS), None)
        loader_cfg = cfg.get(loader)
        if metric is None or not isinstance(loader_cfg, Mapping):
            continue
        for dataset in leaf_datasets(loader_cfg.get("dataset")):
            cls = _dataset_class(dataset, scope)
            if cls is not None and not issubclass(cls, DomainDatasetMixin):
                raise ConfigError(
                    f"`{evaluator_key}` is {metric}, which scores each sample by the `domain` its dataset gives it, "
                    f"but the {loader} dataset {getattr(cls, '__name__', cls)} gives none: use a SoMA dataset "
                    "(DGSegDataset or a subclass such as DGCityscapesDataset for segmentation, DWDDataset for "
                    "detection; set its `domain=`), or a metric without domains (IoUMetric, VOCMetric).")


def _evaluators(cfg: Config, key: str) -> list[Mapping[str, Any]]:
    evaluators = cfg.get(key)
    return [e for e in (evaluators if isinstance(evaluators, (list, tuple)) else [evaluators])
            if isinstance(e, Mapping)]


def _config_domains(loader_cfg: Any, scope: str) -> list[str] | None:
    """The domains of a loader's datasets, from their configs; ``None`` where one cannot be told."""
    from soma.datasets.domain import DomainDatasetMixin

    domains = []
    for dataset in leaf_datasets(loader_cfg.get("dataset") if isinstance(loader_cfg, Mapping) else None):
        cls = _dataset_class(dataset, scope)
        domain = cls.domain_of(dataset) if isinstance(cls, type) and issubclass(cls, DomainDatasetMixin) else None
        if domain is None:
            return None
        domains.append(domain)
    return list(dict.fromkeys(domains)) or None


def check_mean_over(cfg: Config) -> None:
    """The domains a per-domain metric's ``mean_over`` names against those of its datasets.

    The metric can tell only once it has scored every sample, at the end of the first validation or test; here
    the domains follow from the dataset configs (``domain_of`` of SoMA's datasets). Metrics over a dataset whose
    domain cannot be told without building it are left to the metric.

    Raises:
        ConfigError: ``mean_over`` is not a list, or names a domain (or ``DomainIoUMetric`` group) the datasets of
            ``val_dataloader``/``test_dataloader`` do not have.
    """
    from soma.peft.registry import refuse_unknown_options

    scope = cfg.get("default_scope", "mmseg")
    for loader, evaluator_key in (("val_dataloader", "val_evaluator"), ("test_dataloader", "test_evaluator")):
        for evaluator in _evaluators(cfg, evaluator_key):
            mean_over = evaluator.get("mean_over")
            if str(evaluator.get("type")).rpartition(".")[2] not in DOMAIN_METRICS or mean_over is None:
                continue
            if not isinstance(mean_over, (list, tuple)):  # a string would be averaged character by character
                example = f"; write [{mean_over!r}] for one domain" if isinstance(mean_over, str) else ""
                raise ConfigError(f"`{evaluator_key}.mean_over` must be a list of domain names (or None for every "
                                  f"domain), got {mean_over!r}{example}.")
            domains = _config_domains(cfg.get(loader), scope)
            if domains is None:
                continue
            groups = [g for g in evaluator.get("groups") or {} if g not in domains]
            refuse_unknown_options(f"`{evaluator_key}.mean_over`", mean_over, domains + groups, noun="domain",
                                   error=ConfigError, hint=f" (the {loader} datasets' domains"
                                   + (" and the metric's groups)" if groups else ")"))
