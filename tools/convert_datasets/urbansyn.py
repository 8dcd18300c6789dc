"""Check UrbanSyn labels (already Cityscapes trainIds) and write them with 255 as the ignore index.

    python tools/convert_datasets/urbansyn.py data/urbansyn [--nproc 8]

A command line over :mod:`soma.convert.datasets.urbansyn` (what it reads, writes and refuses).
"""
import sys

from soma.convert.datasets.urbansyn import main

if __name__ == "__main__":
    sys.exit(main())
