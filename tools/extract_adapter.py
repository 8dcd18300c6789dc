"""Write the adapter-only file of a trained SoMA checkpoint: adapters, trained biases, head, base fingerprint.

    python tools/extract_adapter.py CONFIG CHECKPOINT OUT.pth

The file is a few MB for ViT-L (instead of the full checkpoint) and is turned back into a full, merged
checkpoint by tools/merge_adapter.py on the same base weights.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from mmengine.runner import load_checkpoint  # noqa: E402

from soma.peft import soma_state_dict  # noqa: E402
from soma.utils import save_checkpoint_atomic  # noqa: E402
from tools.model_loading import (ADAPTER_FORMAT, build_model, head_state,  # noqa: E402
                                 parse_config_input_output)


def extract_adapter(config: str, checkpoint: str, out: str) -> dict:
    """Save the adapter file of ``checkpoint``; returns what was saved."""
    model = build_model(config, pretrained=False)
    load_checkpoint(model, checkpoint, map_location="cpu", strict=True)
    adapter = dict(format=ADAPTER_FORMAT, backbone=soma_state_dict(model.backbone.vit), head=head_state(model),
                   meta=dict(config=str(config), source=str(checkpoint)))
    save_checkpoint_atomic(adapter, out)
    return adapter


def main() -> None:
    args = parse_config_input_output(__doc__.splitlines()[0], "checkpoint")
    adapter = extract_adapter(args.config, args.checkpoint, args.out)
    count = sum(v.numel() for v in adapter["backbone"]["adapters"].values())
    print(f"wrote {args.out}: {count:,} backbone adapter/bias values, {len(adapter['head'])} head tensors")


if __name__ == "__main__":
    main()
