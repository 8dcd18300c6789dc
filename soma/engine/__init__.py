"""Engine parts: model wrappers, hooks and schedulers registered in mmengine."""
from .cpu_ddp import CPUDistributedDataParallel

__all__ = ["CPUDistributedDataParallel"]
