"""Convert an EVA-02 checkpoint into SoMA's backbone format.

    python tools/convert_models/eva02.py SRC DST [--arch tiny|small|base|large] [--patch-resample bicubic|pinv]
    python tools/convert_models/eva02.py eva02_L_pt_m38m_p14.pt checkpoints/eva02_vitl14_converted.pth

A command line over :mod:`soma.convert.models.eva02` (what it reads, writes and refuses).
"""
import sys

from soma.convert.models.eva02 import main

if __name__ == "__main__":
    sys.exit(main())
