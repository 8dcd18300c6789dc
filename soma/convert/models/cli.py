"""The command line every converter shares: ``SRC DST [--arch ARCH]``, the family's options and patch resampling."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .conversion import convert
from .family import Family
from .patch_kernel import PATCH_RESAMPLE_METHODS


def build_parser(family: Family, description: str) -> argparse.ArgumentParser:
    """The command line shared by the converters: ``SRC DST [--arch ARCH]`` plus the family's options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("src", type=Path, help="official release or timm state dict (.pth/.pt/.bin/.safetensors), "
                                               "or a transformers save_pretrained folder / model.safetensors")
    parser.add_argument("dst", type=Path, help="output file, e.g. checkpoints/<name>_converted.pth")
    parser.add_argument("--arch", choices=list(family.backbone.arch_zoo),
                        help="expected arch; default: read off the weights (an error if they disagree)")
    for option in family.options:
        parser.add_argument("--" + option.name.replace("_", "-"), type=int, choices=option.choices,
                            help=f"{option.help}; default: read off the weights (an error if they disagree)")
    if family.patch_resampling:
        parser.add_argument("--patch-resample", choices=PATCH_RESAMPLE_METHODS,
                            help="write the patch kernel resampled to --patch-size: 'bicubic' as the official "
                                 "SoMA converter (DC gain ~1.31, what the published numbers used) or 'pinv' as "
                                 "timm (gain ~1.0); default: keep the native kernel (the backbone resamples it "
                                 "with timm's pinv when it loads the file)")
        parser.add_argument("--patch-size", type=int,
                            help="kernel size written with --patch-resample (default: 16)")
    return parser


def main(family: Family, description: str, argv: Sequence[str] | None = None) -> int:
    """Run a converter's command line; user errors become one ``error:`` line on stderr and exit code 1.

    Args:
        family: the model family.
        description: the ``--help`` description.
        argv: the arguments; default: ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, 1 on an error.
    """
    args = vars(build_parser(family, description).parse_args(argv))
    if args.get("patch_size") is not None and args.get("patch_resample") is None:
        print("error: --patch-size needs --patch-resample bicubic|pinv.", file=sys.stderr)
        return 1
    if args.get("patch_size") is None:
        args.pop("patch_size", None)
    try:
        convert(family, args.pop("src"), args.pop("dst"), **args)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
