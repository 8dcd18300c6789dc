"""Export the fine-tuned backbone as a plain timm state dict, SoMA adapters merged into the weights.

    python tools/export_backbone.py CONFIG CHECKPOINT OUT.pth [--force]

The result loads into ``timm.create_model(<meta timm_model>, patch_size=..., img_size=..., num_classes=0)``
without any SoMA code (blocks pruned by ``out_indices`` and an unused final norm are not part of it; load with
``strict=False`` or build the timm model with the same depth). The checkpoint must fit the config's model
exactly; OUT must not be an input and is replaced only with ``--force``.
"""
from __future__ import annotations

from soma.apis.adapters import export_backbone
from soma.apis.cli import parse_config_input_output
from soma.utils import exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_config_input_output(__doc__.splitlines()[0], "checkpoint", argv)
    meta = export_backbone(args.config, args.checkpoint, args.out, force=args.force)
    print(f"wrote {args.out}: {meta}")


if __name__ == "__main__":
    main()
