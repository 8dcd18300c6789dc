"""Write the adapter-only file of a trained SoMA checkpoint: adapters, trained biases, head, base fingerprint.

    python tools/extract_adapter.py CONFIG CHECKPOINT OUT.pth [--force]

The file is a few MB for ViT-L (instead of the full checkpoint) and is turned back into a full, merged
checkpoint by tools/merge_adapter.py on the same base weights. The checkpoint must fit the config's model
exactly; OUT must not be an input and is replaced only with ``--force``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from soma.peft import soma_layers, soma_state_dict  # noqa: E402
from soma.utils import (ADAPTER_FORMAT, UserError, check_output_file, exit_on_user_error,  # noqa: E402
                        load_checkpoint_checked, save_checkpoint_atomic)
from tools.model_loading import build_model, head_state, parse_config_input_output  # noqa: E402


def extract_adapter(config: str, checkpoint: str, out: str, force: bool = False) -> dict:
    """Save the adapter file of ``checkpoint``; returns what was saved."""
    check_output_file(out, [config, checkpoint], force=force)
    model = build_model(config, pretrained=False)
    if not soma_layers(model.backbone.vit):
        raise UserError(f"{config}'s model has no SoMA layers (`model.backbone.peft` is None): there is no adapter "
                        "to extract; use the config the checkpoint was trained with.")
    load_checkpoint_checked(model, checkpoint)
    adapter = dict(format=ADAPTER_FORMAT, backbone=soma_state_dict(model.backbone.vit), head=head_state(model),
                   meta=dict(config=str(config), source=str(checkpoint)))
    save_checkpoint_atomic(adapter, out)
    return adapter


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_config_input_output(__doc__.splitlines()[0], "checkpoint", argv)
    adapter = extract_adapter(args.config, args.checkpoint, args.out, force=args.force)
    count = sum(v.numel() for v in adapter["backbone"]["adapters"].values())
    print(f"wrote {args.out}: {count:,} backbone adapter/bias values, {len(adapter['head'])} head tensors")


if __name__ == "__main__":
    main()
