"""The domain contract: every sample a SoMA dataset yields carries ``domain`` in its data sample's metainfo.

The per-domain metrics (:class:`soma.evaluation.DomainIoUMetric`, :class:`soma.evaluation.DomainVOCMetric`) read
``data_sample.metainfo["domain"]``. mmseg's ``PackSegInputs`` and mmdet's ``PackDetInputs`` keep only the keys in
their ``meta_keys``, so a pipeline that left ``"domain"`` out used to train for the whole schedule and fail at the
first evaluation. Here the dataset itself writes its domain into what the pipeline packed, whatever the
pipeline's ``meta_keys``; and :func:`soma.config.domains.check_domain_datasets` refuses, before anything is
built, a per-domain metric over a dataset that does not derive from :class:`DomainDatasetMixin`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def tag_domain(packed: Any, domain: str) -> Any:
    """Set ``domain`` in the metainfo of the data sample(s) a pipeline packed: one sample, or the list of a
    test-time augmentation. Anything else (``None`` for a sample the pipeline dropped, an unpacked dict, which
    still holds the data info's ``domain``) is returned unchanged."""
    if not isinstance(packed, dict):
        return packed
    samples = packed.get("data_samples")
    for sample in samples if isinstance(samples, (list, tuple)) else [samples]:
        if hasattr(sample, "set_metainfo"):
            sample.set_metainfo(dict(domain=domain))
    return packed


class DomainDatasetMixin:
    """A dataset whose samples carry its ``domain`` (a short name such as ``"citys"`` or ``"night_rainy"``).

    Put it before the mmengine dataset class in the bases; the subclass sets ``self.domain`` before the
    mmengine ``__init__`` runs.
    """

    domain: str

    @classmethod
    def domain_of(cls, dataset_cfg: Mapping[str, Any]) -> str | None:
        """The domain a dataset of this class built from ``dataset_cfg`` will have (``None`` if it cannot be told
        without building it), so that config checks can compare a metric's ``mean_over`` with it."""
        domain = dataset_cfg.get("domain") or getattr(cls, "DOMAIN", None)
        return domain if isinstance(domain, str) else None

    def prepare_data(self, idx: int) -> Any:
        """The pipeline's output with ``domain`` in each packed data sample's metainfo."""
        return tag_domain(super().prepare_data(idx), self.domain)
