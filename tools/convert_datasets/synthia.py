"""Convert SYNTHIA (RAND-CITYSCAPES) labels to Cityscapes trainIds.

    python tools/convert_datasets/synthia.py data/synthia [--nproc 8]

A command line over :mod:`soma.convert.datasets.synthia` (what it reads, writes and refuses).
"""
import sys

from soma.convert.datasets.synthia import main

if __name__ == "__main__":
    sys.exit(main())
