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
from tools.convert_models.common import Family, build_parser, run  # noqa: E402

DINOV2 = Family(backbone=DINOv2, checkpoint_filter=checkpoint_filter_fn, native_patch=14,
                example_key="blocks.0.attn.qkv.weight")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(DINOV2, __doc__.splitlines()[0])
    parser.add_argument("--register-tokens", type=int, choices=(0, 4), default=None,
                        help="default: 4 if the file has register tokens, else 0")
    args, _ = parser.parse_known_args(argv)
    if args.register_tokens is None and args.src.is_file():
        from soma.utils import load_weights

        from tools.convert_models.common import unwrap

        keys = unwrap(load_weights(args.src)).keys()
        parser.set_defaults(register_tokens=4 if {"register_tokens", "reg_token"} & set(keys) else 0)
    return run(DINOV2, parser, argv, register_tokens=None)


if __name__ == "__main__":
    sys.exit(main())
