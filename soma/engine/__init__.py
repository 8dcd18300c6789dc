"""Engine parts: model wrappers, hooks and schedulers registered in mmengine."""
from .cpu_ddp import CPUDistributedDataParallel
from .ema import FrozenAwareEMAHook, TrainableExponentialMovingAverage
from .hooks import LabelSizeCheckHook, RandomStateHook, WeightDecayLoggerHook
from .merge_hook import MergeAdaptersHook
from .optim import FrozenAwareOptimWrapperConstructor
from .runner import SoMARunner, build_runner

__all__ = ["CPUDistributedDataParallel", "FrozenAwareEMAHook", "TrainableExponentialMovingAverage",
           "WeightDecayLoggerHook", "RandomStateHook", "MergeAdaptersHook", "LabelSizeCheckHook",
           "FrozenAwareOptimWrapperConstructor", "SoMARunner", "build_runner"]
