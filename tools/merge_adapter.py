"""Rebuild a full checkpoint from the base weights and an adapter file, adapters merged into the weights.

    python tools/merge_adapter.py CONFIG ADAPTER.pth OUT.pth [--force]

The base weights are the config's ``model.backbone.init_cfg`` checkpoint; an adapter trained on other base
weights, another rank or another head is refused. The result has a plain backbone (no SoMA layers, no
inference overhead): evaluate it with ``--cfg-options model.backbone.peft=None``. OUT must not be an input
(the adapter, the base weights, the config) and is replaced only with ``--force``.
"""
from __future__ import annotations

from soma.apis.adapters import merge_adapter
from soma.apis.cli import parse_config_input_output
from soma.utils import exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_config_input_output(__doc__.splitlines()[0], "adapter", argv)
    merge_adapter(args.config, args.adapter, args.out, force=args.force)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
