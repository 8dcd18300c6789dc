"""Rebuild a full checkpoint from the base weights and an adapter file, adapters merged into the weights.

    python tools/merge_adapter.py CONFIG ADAPTER.pth OUT.pth

The base weights are the config's ``model.backbone.init_cfg`` checkpoint; an adapter trained on other base
weights is refused. The result has a plain backbone (no SoMA layers, no inference overhead): evaluate it with
``--cfg-options model.backbone.peft=None``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from soma.peft import load_soma_state_dict, unload_soma  # noqa: E402
from soma.utils import load_weights, save_checkpoint_atomic  # noqa: E402
from tools.model_loading import ADAPTER_FORMAT, build_model, parse_config_input_output  # noqa: E402


def merge_adapter(config: str, adapter_path: str, out: str) -> None:
    """Load base + adapter, merge, and save ``{"state_dict", "meta"}`` at ``out``."""
    adapter = load_weights(adapter_path)
    if adapter.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"'{adapter_path}' is not an adapter file of tools/extract_adapter.py "
                         f"(format {adapter.get('format')!r}, expected {ADAPTER_FORMAT!r}).")
    model = build_model(config, pretrained=True)
    load_soma_state_dict(model.backbone.vit, adapter["backbone"])  # refuses another base or rank
    missing = set(adapter["head"]) ^ {k for k in model.state_dict() if not k.startswith("backbone.")}
    if missing:
        raise ValueError(f"the adapter file's head does not match the config's model: {sorted(missing)[:5]}")
    model.load_state_dict(adapter["head"], strict=False)
    unload_soma(model.backbone.vit, merge=True)
    save_checkpoint_atomic(dict(state_dict=model.state_dict(), meta=dict(adapter["meta"], merged=True)), out)


def main() -> None:
    args = parse_config_input_output(__doc__.splitlines()[0], "adapter")
    merge_adapter(args.config, args.adapter, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
