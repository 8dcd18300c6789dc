"""Small shared helpers: checkpoint loading policy, config validation."""
from .checkpoint import (atomic_path, load_trusted_checkpoint, load_weights, register_atomic_local_backend,
                         register_trusted_local_loader, save_checkpoint_atomic, write_text_atomic)
from .config_check import UnknownTypeError, check_config_types
from .distributed import use_cpu_distributed
from .mmcv_ops import configure_mmcv_ops, use_pytorch_msdeformattn
from .run_config import add_runner_arguments, load_run_config

__all__ = [
    "load_weights", "load_trusted_checkpoint", "save_checkpoint_atomic", "atomic_path", "write_text_atomic",
    "register_trusted_local_loader", "register_atomic_local_backend",
    "check_config_types", "UnknownTypeError", "use_cpu_distributed",
    "add_runner_arguments", "load_run_config", "use_pytorch_msdeformattn",
]

register_trusted_local_loader()
register_atomic_local_backend()
configure_mmcv_ops()  # SOMA_MSDA_PYTORCH, and named errors for CUDA ops mmcv was built without
