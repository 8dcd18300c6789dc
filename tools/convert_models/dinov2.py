"""Convert a DINOv2 checkpoint into SoMA's backbone format.

    python tools/convert_models/dinov2.py SRC DST [--arch small|base|large|giant] [--register-tokens 0|4]
                                          [--patch-resample bicubic|pinv] [--patch-size 16]
    python tools/convert_models/dinov2.py dinov2_vitl14_pretrain.pth checkpoints/dinov2_vitl14_converted.pth
    python tools/convert_models/dinov2.py facebook-dinov2-large/ checkpoints/dinov2_vitl14_converted.pth  # HF folder
    # the kernel the published SoMA numbers were obtained with (the official converter's bicubic 14 -> 16):
    python tools/convert_models/dinov2.py dinov2_vitl14_pretrain.pth \\
        checkpoints/dinov2_vitl14_patch16-bicubic.pth --patch-resample bicubic

A command line over :mod:`soma.convert.models.dinov2` (what it reads, writes and refuses).
"""
import sys

from soma.convert.models.dinov2 import main

if __name__ == "__main__":
    sys.exit(main())
