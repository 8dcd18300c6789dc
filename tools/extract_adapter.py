"""Write the adapter-only file of a trained SoMA checkpoint: adapters, trained biases, head, base fingerprint.

    python tools/extract_adapter.py CONFIG CHECKPOINT OUT.pth [--force]

The file is a few MB for ViT-L (instead of the full checkpoint) and is turned back into a full, merged
checkpoint by tools/merge_adapter.py on the same base weights. The checkpoint must fit the config's model
exactly; OUT must not be an input and is replaced only with ``--force``.
"""
from __future__ import annotations

from soma.apis.adapters import extract_adapter
from soma.apis.cli import parse_config_input_output
from soma.utils import exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_config_input_output(__doc__.splitlines()[0], "checkpoint", argv)
    adapter = extract_adapter(args.config, args.checkpoint, args.out, force=args.force)
    count = sum(v.numel() for v in adapter["backbone"]["adapters"].values())
    print(f"wrote {args.out}: {count:,} backbone adapter/bias values, {len(adapter['head'])} head tensors")


if __name__ == "__main__":
    main()
