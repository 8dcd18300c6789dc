"""Train a segmentor or detector from a config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--seed N] [--resume | --overwrite] [--amp] [--cfg-options ...]
    bash tools/dist_train.sh CONFIG GPUS [same options]

A work dir that holds checkpoints is refused unless the run continues them (``--resume``) or replaces them
(``--overwrite``); a running training locks its work dir against a second one. The work is done by
:func:`soma.apis.training.main`.
"""
from soma.apis.training import main

if __name__ == "__main__":
    main()
