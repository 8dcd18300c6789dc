"""The command line shared by the checkpoint tools (tools/export_backbone.py, extract_adapter.py,
merge_adapter.py)."""
from __future__ import annotations

import argparse

__all__ = ["parse_config_input_output"]


def parse_config_input_output(description: str, input_name: str, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``CONFIG INPUT OUT [--force]``; ``input_name`` names the INPUT attribute (``checkpoint``, ``adapter``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help="the config the checkpoint was trained with")
    parser.add_argument(input_name)
    parser.add_argument("out", help="output file (never one of the inputs)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    return parser.parse_args(argv)
