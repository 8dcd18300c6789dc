"""Convert a DINOv2 checkpoint into SoMA's backbone format.

    python tools/convert_models/dinov2.py dinov2_vitl14_pretrain.pth checkpoints/dinov2_vitl14_converted.pth

Accepts the official ``dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth`` files and timm ``vit_*_patch14_dinov2``
state dicts; the arch and register tokens are read from the weights (``--arch`` is checked against them).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from timm.models.vision_transformer import checkpoint_filter_fn  # noqa: E402

from soma.models import DINOv2  # noqa: E402
from tools.convert_models.common import Family  # noqa: E402
from tools.convert_models.common import main as convert_main  # noqa: E402

DINOV2 = Family(backbone=DINOv2, checkpoint_filter=checkpoint_filter_fn, native_patch=14,
                example_key="blocks.0.attn.qkv.weight",
                detect_options=lambda state: {"register_tokens": 4 if {"register_tokens", "reg_token"} & set(state)
                                              else 0})


def main(argv: Sequence[str] | None = None) -> int:
    return convert_main(DINOV2, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
