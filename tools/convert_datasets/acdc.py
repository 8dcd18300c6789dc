"""Check ACDC's trainId labels, writing them from the label ids where they are missing.

    python tools/convert_datasets/acdc.py data/acdc [--condition fog night rain snow] [--split train val test]

A command line over :mod:`soma.convert.datasets.acdc` (what it reads, writes and refuses).
"""
import sys

from soma.convert.datasets.acdc import main

if __name__ == "__main__":
    sys.exit(main())
