"""Building a config's model for the checkpoint tools (export_backbone, extract_adapter, merge_adapter)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from soma.apis import build_model, build_model_from_cfg, head_state  # noqa: E402
from soma.utils import ADAPTER_FORMAT  # noqa: E402

__all__ = ["ADAPTER_FORMAT", "build_model", "build_model_from_cfg", "head_state", "parse_config_input_output"]


def parse_config_input_output(description: str, input_name: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line shared by the checkpoint tools: ``CONFIG INPUT OUT [--force]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help="the config the checkpoint was trained with")
    parser.add_argument(input_name)
    parser.add_argument("out", help="output file (never one of the inputs)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    return parser.parse_args(argv)
