"""Map Mapillary Vistas v1.2 labels (65 classes) to the 19 Cityscapes trainIds and halve images and labels.

    python tools/convert_datasets/mapillary.py data/mapillary [--split validation training] [--nproc 8]

A command line over :mod:`soma.convert.datasets.mapillary` (what it reads, writes and refuses).
"""
import sys

from soma.convert.datasets.mapillary import main

if __name__ == "__main__":
    sys.exit(main())
