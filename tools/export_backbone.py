"""Export the fine-tuned backbone as a plain timm state dict, SoMA adapters merged into the weights.

    python tools/export_backbone.py CONFIG CHECKPOINT OUT.pth [--force]

The result loads into ``timm.create_model(<meta timm_model>, patch_size=..., img_size=..., num_classes=0)``
without any SoMA code (blocks pruned by ``out_indices`` and an unused final norm are not part of it; load with
``strict=False`` or build the timm model with the same depth). The checkpoint must fit the config's model
exactly; OUT must not be an input and is replaced only with ``--force``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from soma.peft import soma_layers, unload_soma  # noqa: E402
from soma.utils import (check_output_file, exit_on_user_error, load_checkpoint_checked,  # noqa: E402
                        save_checkpoint_atomic)
from tools.model_loading import build_model, parse_config_input_output  # noqa: E402


def export_backbone(config: str, checkpoint: str, out: str, force: bool = False) -> dict:
    """Build the model of ``config``, load ``checkpoint``, merge the adapters and save the backbone's weights.

    Returns:
        The meta data saved next to the state dict (timm model name, patch and image size).
    """
    check_output_file(out, [config, checkpoint], force=force)
    model = build_model(config, pretrained=False)  # the checkpoint holds every weight
    load_checkpoint_checked(model, checkpoint)
    vit = model.backbone.vit
    adapted = len(soma_layers(vit))
    unload_soma(vit, merge=True)
    meta = dict(timm_model=vit.default_cfg.get("architecture"), patch_size=vit.patch_embed.patch_size[0],
                img_size=vit.patch_embed.img_size[0], depth=len(vit.blocks), merged_layers=adapted,
                source=str(checkpoint))
    save_checkpoint_atomic({"state_dict": vit.state_dict(), "meta": meta}, out)
    return meta


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_config_input_output(__doc__.splitlines()[0], "checkpoint", argv)
    meta = export_backbone(args.config, args.checkpoint, args.out, force=args.force)
    print(f"wrote {args.out}: {meta}")


if __name__ == "__main__":
    main()
