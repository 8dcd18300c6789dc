"""Import a checkpoint of the official SoMA release (github ysj9909/SoMA) for evaluation with this codebase.

    python tools/convert_models/released_soma.py RELEASED_BEST.pth DINOV2_RELEASE.pth OUT.pth [--config CONFIG]
    python tools/convert_models/released_soma.py soma_dinov2-L_g2cbm_best.pth dinov2_vitl14_pretrain.pth \
        checkpoints/soma_dinov2-l_gta2cbm-512_released.pth --config configs/soma/soma_dinov2-l_gta2cbm-512.py
    bash tools/test.sh configs/soma/soma_dinov2-l_gta2cbm-512.py checkpoints/soma_dinov2-l_gta2cbm-512_released.pth

A command line over :mod:`soma.convert.models.released_soma` (what it reads, writes and refuses).
"""
import sys

from soma.convert.models.released_soma import main

if __name__ == "__main__":
    sys.exit(main())
