"""Evaluate a checkpoint on the test set(s) of a config with mmengine's Runner and print the metrics.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--tta] [--show-dir DIR] [--force] [--cfg-options ...]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

The checkpoint is loaded strictly: one that does not fit the config's model (another architecture, rank or
class count; an adapter-only or merged file) is refused with the likely cause. ``--non-strict`` loads only the
tensors that fit and lists the rest. The work is done by :func:`soma.apis.testing.main`.
"""
from soma.apis.testing import main

if __name__ == "__main__":
    main()
