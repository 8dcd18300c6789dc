"""Rebuild a full checkpoint from the base weights and an adapter file, adapters merged into the weights.

    python tools/merge_adapter.py CONFIG ADAPTER.pth OUT.pth [--force]

The base weights are the config's ``model.backbone.init_cfg`` checkpoint; an adapter trained on other base
weights, another rank or another head is refused. The result has a plain backbone (no SoMA layers, no
inference overhead): evaluate it with ``--cfg-options model.backbone.peft=None``. OUT must not be an input
(the adapter, the base weights, the config) and is replaced only with ``--force``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from soma.peft import load_soma_state_dict, unload_soma  # noqa: E402
from soma.utils import (ADAPTER_FORMAT, CheckpointMismatchError, check_output_file,  # noqa: E402
                        exit_on_user_error, load_config, load_weights, save_checkpoint_atomic)
from soma.utils.strict_loading import compare_state_dict  # noqa: E402
from tools.model_loading import build_model, parse_config_input_output  # noqa: E402


def read_adapter(adapter_path: str) -> dict:
    """The adapter file's content; anything else (a training checkpoint, another file) is refused."""
    try:
        adapter = load_weights(adapter_path)
    except RuntimeError as exc:
        raise CheckpointMismatchError(
            f"'{adapter_path}' is not an adapter file of tools/extract_adapter.py ({exc}). A training checkpoint is "
            "turned into one with tools/extract_adapter.py.") from None
    if not isinstance(adapter, dict) or adapter.get("format") != ADAPTER_FORMAT:
        found = adapter.get("format") if isinstance(adapter, dict) else type(adapter).__name__
        raise CheckpointMismatchError(f"'{adapter_path}' is not an adapter file of tools/extract_adapter.py "
                                      f"(format {found!r}, expected {ADAPTER_FORMAT!r}). A training checkpoint is "
                                      "turned into one with tools/extract_adapter.py.")
    return adapter


def merge_adapter(config: str, adapter_path: str, out: str, force: bool = False) -> None:
    """Load base + adapter, merge, and save ``{"state_dict", "meta"}`` at ``out``."""
    base = load_config(config).model.backbone.get("init_cfg") or {}
    check_output_file(out, [config, adapter_path] + ([base["checkpoint"]] if base.get("checkpoint") else []),
                      force=force)
    adapter = read_adapter(adapter_path)
    model = build_model(config, pretrained=True)
    try:
        load_soma_state_dict(model.backbone.vit, adapter["backbone"])  # refuses another base or rank
    except ValueError as exc:
        raise CheckpointMismatchError(f"adapter '{adapter_path}' does not fit {config}: {exc}") from None
    head = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    mismatch = compare_state_dict(head, adapter["head"])
    if mismatch:
        raise CheckpointMismatchError(f"the head in adapter '{adapter_path}' does not fit {config}'s model: "
                                      f"{mismatch.summary()}.")
    model.load_state_dict(adapter["head"], strict=False)
    unload_soma(model.backbone.vit, merge=True)
    save_checkpoint_atomic(dict(state_dict=model.state_dict(), meta=dict(adapter["meta"], merged=True)), out)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_config_input_output(__doc__.splitlines()[0], "adapter", argv)
    merge_adapter(args.config, args.adapter, args.out, force=args.force)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
