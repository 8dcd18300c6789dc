"""Small shared helpers: checkpoint loading policy and strict loading, config validation, user errors, work dirs.

Importing this package changes nothing in mmengine, mmcv or mmdet; :func:`soma.apis.runtime.setup_runtime`
applies the checkpoint policy, atomic writes and mmcv op settings when a tool asks for them.
"""
from .checkpoint import (CheckpointReadError, atomic_path, is_trusted_checkpoint, load_local_checkpoint,
                         load_trusted_checkpoint, load_weights, register_atomic_local_backend,
                         register_local_checkpoint_loader, save_checkpoint_atomic, trust_checkpoint,
                         write_text_atomic)
from .config_check import (UnknownTypeError, check_component_options, check_config_types, check_domain_datasets,
                           check_legacy_keys, check_mean_over, check_num_classes, load_config, warn_patch_padding)
from .distributed import check_device, use_cpu_distributed
from .errors import ConfigError, DataError, OutputExistsError, UserError, exit_on_user_error
from .mmcv_ops import configure_mmcv_ops, use_pytorch_msdeformattn
from .outputs import check_output_dir, check_output_file, check_writable_dir
from .run_config import add_runner_arguments, load_run_config
from .strict_loading import ADAPTER_FORMAT, CheckpointMismatchError, check_checkpoint_fits, load_checkpoint_checked
from .work_dir import WorkDirError, claim_work_dir

__all__ = [
    "load_weights", "load_trusted_checkpoint", "CheckpointReadError", "save_checkpoint_atomic", "atomic_path",
    "write_text_atomic",
    "trust_checkpoint", "is_trusted_checkpoint", "load_local_checkpoint", "register_local_checkpoint_loader",
    "register_atomic_local_backend", "configure_mmcv_ops",
    "check_config_types", "UnknownTypeError", "use_cpu_distributed", "check_device",
    "add_runner_arguments", "load_run_config", "use_pytorch_msdeformattn",
    "load_config", "check_legacy_keys", "check_num_classes", "check_domain_datasets", "warn_patch_padding",
    "check_component_options", "check_mean_over",
    "UserError", "ConfigError", "DataError", "OutputExistsError", "exit_on_user_error",
    "check_output_file", "check_output_dir", "check_writable_dir",
    "ADAPTER_FORMAT", "CheckpointMismatchError", "check_checkpoint_fits", "load_checkpoint_checked",
    "WorkDirError", "claim_work_dir",
]
