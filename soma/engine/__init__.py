"""Engine parts: model wrappers, hooks and schedulers registered in mmengine."""
from .cpu_ddp import CPUDistributedDataParallel
from .hooks import RandomStateHook, WeightDecayLoggerHook
from .merge_hook import MergeAdaptersHook
from .optim import FrozenAwareOptimWrapperConstructor

__all__ = ["CPUDistributedDataParallel", "WeightDecayLoggerHook", "RandomStateHook", "MergeAdaptersHook",
           "FrozenAwareOptimWrapperConstructor"]
