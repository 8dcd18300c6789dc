"""Convert an EVA-02 checkpoint into SoMA's backbone format.

    python tools/convert_models/eva02.py eva02_L_pt_m38m_p14.pt checkpoints/eva02_vitl14_converted.pth

Accepts the official EVA-02 MIM checkpoints (weights possibly nested under ``module``/``model``) and timm
``eva02_*_patch14_224`` state dicts; the arch is read from the weights (``--arch`` is checked against them).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from timm.models.eva import checkpoint_filter_fn  # noqa: E402

from soma.models import EVA02  # noqa: E402
from tools.convert_models.common import Family  # noqa: E402
from tools.convert_models.common import main as convert_main  # noqa: E402

EVA02_FAMILY = Family(backbone=EVA02, checkpoint_filter=checkpoint_filter_fn, native_patch=14,
                      example_key="blocks.0.attn.q_proj.weight")


def main(argv: Sequence[str] | None = None) -> int:
    return convert_main(EVA02_FAMILY, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
