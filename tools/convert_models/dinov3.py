"""Convert a DINOv3 checkpoint into SoMA's backbone format.

    python tools/convert_models/dinov3.py SRC DST [--arch tiny|small|base|large] [--qkv-bias 0|1]
    python tools/convert_models/dinov3.py dinov3_vitl16_pretrain_lvd1689m.pth checkpoints/dinov3_vitl16_converted.pth

A command line over :mod:`soma.convert.models.dinov3` (what it reads, writes and refuses).
"""
import sys

from soma.convert.models.dinov3 import main

if __name__ == "__main__":
    sys.exit(main())
