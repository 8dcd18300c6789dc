"""Distributed data parallel on CPU (gloo), for tests and machines without GPUs."""
from __future__ import annotations

from typing import Any

from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for a module on CPU.

    The Runner always passes ``device_ids=[LOCAL_RANK]``, which torch refuses for CPU modules; here they are
    dropped. Select it with ``model_wrapper_cfg = dict(type="CPUDistributedDataParallel")``.
    """

    def __init__(self, module: Any, device_ids: Any = None, **kwargs: Any) -> None:
        super().__init__(module=module, device_ids=None, **kwargs)
