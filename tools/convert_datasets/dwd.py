"""Arrange the downloaded Diverse Weather Dataset (DWD) as ``data/dwd/<domain>/VOC2007/...`` by symlinks.

    python tools/convert_datasets/dwd.py DOWNLOAD_DIR [--out data/dwd]

A command line over :mod:`soma.convert.datasets.dwd` (what it reads, writes and refuses).
"""
import sys

from soma.convert.datasets.dwd import main

if __name__ == "__main__":
    sys.exit(main())
