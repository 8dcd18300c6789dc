"""Trainable backbone parameters of every adapter method, frozen and full fine-tuning, as a markdown table.

    python tools/benchmark/trainable_params.py                 # DINOv2-L, the G->CBM configs
    python tools/benchmark/trainable_params.py --arch tiny     # the tests' 4-block arch (adapted blocks scaled)

What each row and column counts: soma/analysis/trainable_params.py.
"""
from soma.analysis.trainable_params import main

if __name__ == "__main__":
    main()
