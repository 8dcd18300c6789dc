"""Small shared helpers that know nothing of models or configs: user errors, checkpoint files (trusted loading,
atomic writes), output and work dirs, devices and mmcv's ops.

The names are imported from their modules when first used, so that ``soma.utils.checkpoint`` (torch only) can be
imported by ``soma.peft`` without mmengine. Importing this package changes nothing in mmengine, mmcv or mmdet;
:func:`soma.utils.runtime.setup_runtime` applies the checkpoint policy, atomic writes and mmcv op settings when a
tool asks for them.
"""
from importlib import import_module
from typing import Any

_EXPORTS = {
    "checkpoint": ("CheckpointReadError", "atomic_path", "is_trusted_checkpoint", "load_local_checkpoint",
                   "load_trusted_checkpoint", "load_weights", "register_atomic_local_backend",
                   "register_local_checkpoint_loader", "save_checkpoint_atomic", "trust_checkpoint",
                   "write_text_atomic"),
    "cli": ("non_negative_int", "positive_int", "random_seed"),
    "distributed": ("check_device", "process_group_destroyed_at_exit", "use_cpu_distributed"),
    "errors": ("ConfigError", "DataError", "OutputExistsError", "UserError", "exit_on_user_error"),
    "mmcv_ops": ("configure_mmcv_ops", "use_pytorch_msdeformattn"),
    "outputs": ("check_output_dir", "check_output_file", "check_writable_dir"),
    "runtime": ("setup_runtime",),
    "work_dir": ("WorkDirError", "claim_work_dir"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'soma.utils' has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
