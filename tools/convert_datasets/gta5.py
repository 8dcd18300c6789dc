"""Convert GTA5 labels (Cityscapes label ids) to Cityscapes trainIds.

    python tools/convert_datasets/gta5.py data/gta [--nproc 8]

A command line over :mod:`soma.convert.datasets.gta5` (what it reads, writes and refuses).
"""
import sys

from soma.convert.datasets.gta5 import main

if __name__ == "__main__":
    sys.exit(main())
