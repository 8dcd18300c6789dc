"""The library functions behind the command-line tools: building a config's model, loading trained weights,
inference, and adapter files. Tools in ``tools/`` are thin command lines over these."""
from .export import PeftExport, export_peft_adapter
from .model import build_model, build_model_from_cfg, head_state
from .runtime import setup_runtime, trust_checkpoint

__all__ = ["build_model", "build_model_from_cfg", "head_state", "PeftExport", "export_peft_adapter",
           "setup_runtime", "trust_checkpoint"]
