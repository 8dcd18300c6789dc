"""The library functions behind the command-line tools: training and testing runs, inference, adapter files and
exports, the ACDC submission. Tools in ``tools/`` are thin command lines over these."""
from .export import PeftExport, export_peft_adapter

__all__ = ["PeftExport", "export_peft_adapter"]
