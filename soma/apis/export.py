"""A trained SoMA backbone as a standard Hugging Face peft LoRA adapter for the plain timm model.

The adapter applies to the *original* pretrained weights (the config's ``model.backbone.init_cfg`` checkpoint
loaded into timm's model of the same architecture): ``peft.PeftModel.from_pretrained(timm_model, OUT_DIR)``
then computes what the trained backbone computes. The factor maths is :mod:`soma.peft.hf_export`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..peft import load_soma_state_dict, soma_layers
from ..peft.hf_export import (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, peft_lora_adapter, save_peft_lora_adapter,
                              soma_start_state)
from ..config import load_config
from ..peft.state import ADAPTER_FORMAT
from ..utils import ConfigError, check_output_dir, load_trusted_checkpoint
from ..weights import CheckpointMismatchError
from ..weights import load_state_dict_checked
from ..models.builder import build_model

__all__ = ["PeftExport", "export_peft_adapter", "timm_model_call"]


@dataclass
class PeftExport:
    """What :func:`export_peft_adapter` wrote.

    Attributes:
        out_dir: the folder with ``adapter_config.json`` and ``adapter_model.safetensors``.
        adapter_config: the content of ``adapter_config.json``.
        timm_model: the timm model the adapter is for, as the ``timm.create_model`` call that builds the
            backbone's timm model (architecture, sizes, patch and image size); it takes the base weights.
        base_checkpoint: the config's ``init_cfg`` checkpoint: the base weights the adapter applies to.
        notes: what a user of the adapter must know (e.g. an option the timm model needs).
    """

    out_dir: Path
    adapter_config: dict[str, Any]
    timm_model: str
    base_checkpoint: str
    notes: list[str] = field(default_factory=list)

    @property
    def ranks(self) -> dict[str, int]:
        """The LoRA rank of every adapted module."""
        config = self.adapter_config
        return {name: config["rank_pattern"].get(name, config["r"]) for name in config["target_modules"]}


def _check_soma_config(config: str, backbone: Any) -> None:
    peft = backbone.get("peft")
    if not peft:
        raise ConfigError(f"{config} trains no adapter (`model.backbone.peft` is None: a frozen backbone or full "
                          "fine-tuning), so there is no LoRA adapter to export; use the config the checkpoint was "
                          "trained with, or share the full checkpoint.")
    method = peft.get("type", "SoMA")
    if method != "SoMA":
        raise ConfigError(f"{config} trains a `{method}` adapter; only SoMA adapters (any `init`) can be written as "
                          "a peft LoRA adapter.")


def _load_trained(model: torch.nn.Module, checkpoint: str) -> None:
    """A training checkpoint (strictly, the whole model) or an adapter file of tools/extract_adapter.py."""
    state = load_trusted_checkpoint(checkpoint)
    if isinstance(state, dict) and state.get("format") == ADAPTER_FORMAT:
        try:  # refuses adapters trained on other base weights (fingerprints)
            load_soma_state_dict(model.backbone.vit, state["backbone"])
        except ValueError as exc:
            raise CheckpointMismatchError(f"adapter '{checkpoint}' does not fit the config's model: {exc}") from None
        return
    load_state_dict_checked(model, state, checkpoint)


def _trained_names(vit: torch.nn.Module) -> set[str]:
    """State-dict keys of the SoMA layers (adapters, residuals, biases): compared by :mod:`soma.peft.hf_export`."""
    return {f"{name}.{key}" for name, layer in soma_layers(vit).items() for key in layer.state_dict()}


def _check_frozen_weights(vit: torch.nn.Module, before: dict[str, torch.Tensor], checkpoint: str) -> None:
    changed = [key for key, value in vit.state_dict().items()
               if key in before and not torch.allclose(value.detach().cpu(), before[key], rtol=1e-5, atol=1e-6)]
    if changed:
        raise CheckpointMismatchError(
            f"'{checkpoint}' has other values than the config's base weights in {len(changed)} weights outside the "
            f"adapted layers (e.g. {changed[:4]}); a LoRA adapter on the base weights cannot express that. Was it "
            "trained on another `init_cfg` checkpoint?")


# Options of the backbone's timm model that change training only, not what the model computes in eval mode.
_TRAINING_ONLY_OPTIONS = ("drop_path_rate",)


def timm_model_call(backbone: torch.nn.Module) -> tuple[str, list[str]]:
    """The ``timm.create_model(...)`` call that builds ``backbone``'s timm model (its sizes included), and notes
    for a model no released timm model matches (a test or demo architecture: other width, depth or heads)."""
    name, options = backbone.timm_create_args
    shown = {k: v for k, v in options.items() if k not in _TRAINING_ONLY_OPTIONS}
    call = f"timm.create_model({name!r}, {', '.join(f'{k}={v!r}' for k, v in shown.items())})"
    arch = getattr(backbone, "arch", None)
    sizes = backbone.arch_zoo.get(arch, (None, {}, None))[1] if hasattr(backbone, "arch_zoo") else {}
    if not sizes:
        return call, []
    listed = ", ".join(f"{k}={v!r}" for k, v in sizes.items())
    return call, [f"no released timm model matches arch {arch!r} ({listed} differ from timm's {name!r}): build it "
                  "with the call above (pretrained=False) and load the base weights into it yourself."]


def _separate_bias_note(vit: torch.nn.Module) -> list[str]:
    """timm's Eva attention with a fused qkv and q/v biases skips a LoRA on ``qkv`` unless told otherwise."""
    fused = [name for name in soma_layers(vit) if name.endswith("attn.qkv")
             and getattr(vit.get_submodule(name.rpartition(".")[0]), "q_bias", None) is not None]
    if not fused:
        return []
    return ["timm's attention of this model applies `attn.qkv` with its q/v biases through F.linear on the weight, "
            "which skips the LoRA of `attn.qkv`: set `block.attn.qkv_bias_separate = True` on every block of the "
            "timm model before loading the adapter."]


def export_peft_adapter(config: str | os.PathLike, checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                        force: bool = False) -> PeftExport:
    """Write the trained SoMA adapter of ``checkpoint`` as a peft LoRA adapter folder (see the module docstring).

    Args:
        config: the config the checkpoint was trained with; its ``model.backbone.init_cfg`` is the base.
        checkpoint: a training checkpoint (the whole model, adapters unmerged) or an adapter file of
            tools/extract_adapter.py.
        out_dir: the output folder; its adapter files are replaced only with ``force``.

    Raises:
        ConfigError: the config trains no SoMA adapter or has no base checkpoint.
        CheckpointMismatchError: the checkpoint does not fit the config, or was trained on other base weights.
        OutputExistsError: ``out_dir`` is an input or already holds an adapter (without ``force``).
    """
    config, checkpoint = str(config), str(checkpoint)
    backbone = load_config(config).model.backbone
    _check_soma_config(config, backbone)
    base = (backbone.get("init_cfg") or {}).get("checkpoint")
    check_output_dir(out_dir, [config, checkpoint] + ([base] if base else []),
                     produced=[ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME], force=force)
    model = build_model(config, pretrained=True)  # raises ConfigError without init_cfg
    vit = model.backbone.vit
    start = soma_start_state(vit)
    trained = _trained_names(vit)
    frozen = {k: v.detach().cpu().clone() for k, v in vit.state_dict().items() if k not in trained}
    _load_trained(model, checkpoint)
    _check_frozen_weights(vit, frozen, checkpoint)
    name = getattr(vit, "pretrained_cfg", {}).get("architecture")
    try:
        tensors, adapter_config = peft_lora_adapter(vit, start, base_model_name_or_path=name)
    except ValueError as exc:
        raise CheckpointMismatchError(f"'{checkpoint}' does not fit the base weights of {config}: {exc}") from None
    save_peft_lora_adapter(out_dir, tensors, adapter_config)
    timm_model, timm_notes = timm_model_call(model.backbone)
    return PeftExport(out_dir=Path(out_dir), adapter_config=adapter_config, timm_model=timm_model,
                      base_checkpoint=str(base), notes=timm_notes + _separate_bias_note(vit))
