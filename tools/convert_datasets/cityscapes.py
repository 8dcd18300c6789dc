"""Write Cityscapes ``*_gtFine_labelTrainIds.png`` from the shipped ``*_gtFine_labelIds.png``.

    python tools/convert_datasets/cityscapes.py data/cityscapes [--split train val] [--nproc 8]

A command line over :mod:`soma.convert.datasets.cityscapes` (what it reads, writes and refuses).
"""
import sys

from soma.convert.datasets.cityscapes import main

if __name__ == "__main__":
    sys.exit(main())
