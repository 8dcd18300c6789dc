"""What is analysed: a config (its ``init_cfg`` weights, built and split as for training), a training checkpoint
(its config stored in it) or a plain backbone weight file.
"""
from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from mmengine.config import Config

from ...config.loading import load_config
from ...models.builder import build_model
from ...weights import load_trained_weights, read_state_dict
from ...peft import adapter_layers, is_adapter_key
from ...utils.checkpoint import CONFIG_SUFFIXES
from ...utils import load_trusted_checkpoint

from .maths import SpectrumReport, analyse_models, analyse_state_dict


def _init_cfg_checkpoint(cfg: Config) -> str | None:
    init_cfg = cfg.model.get("backbone", {}).get("init_cfg") or {}
    return init_cfg.get("checkpoint") if init_cfg.get("type") == "Pretrained" else None


def analyse(config: str | Path, checkpoint: str | Path | None = None,
            blocks: Sequence[int] | None = None) -> SpectrumReport:
    """The spectra of a config's SoMA layers: pretrained (from its ``init_cfg``) and, given ``checkpoint``,
    trained, with the relative changes.

    Raises:
        FileNotFoundError: a missing config or checkpoint.
        ValueError: the config has no SoMA layers, or neither base weights nor a checkpoint to analyse.
    """
    for path, what in ((config, "config"), (checkpoint, "checkpoint")):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{what} file '{path}' does not exist.")
    cfg = load_config(config)
    base = _init_cfg_checkpoint(cfg)
    notes = []
    if base is not None and not Path(base).is_file():
        if checkpoint is None:
            raise FileNotFoundError(f"the base weights '{base}' of {config} (model.backbone.init_cfg) do not exist; "
                                    "convert them with tools/convert_models/ or pass a trained --checkpoint.")
        notes.append(f"base weights '{base}' not found: showing the checkpoint's own weights, no changes.")
        base = None
    if base is None and checkpoint is None:
        raise ValueError(f"{config} has no `model.backbone.init_cfg` checkpoint, so there are no pretrained "
                         "weights to analyse; pass a trained --checkpoint (its own weights are then shown).")
    reference = build_model(str(config), pretrained=True) if base is not None else None
    trained = None
    if checkpoint is not None:
        trained = build_model(str(config), pretrained=False)
        layout = copy.deepcopy(trained)  # keeps the SoMA layout even when a merged checkpoint unwraps it
        load_trained_weights(trained, checkpoint)
    else:
        layout = reference
    if not adapter_layers(layout):
        raise ValueError(f"the model of {config} has no adapted layers (`model.backbone.peft` is None); analyse a "
                         "config with `peft=dict(type='SoMA', ...)`, or a plain weight file with --rank.")
    if base is None:
        notes.append("no base weights (config has no init_cfg checkpoint): spectra of the checkpoint's own weights "
                     "(residual + scale·BA), no changes.")
        matrices = analyse_models(None, trained, layout, blocks)
        return SpectrumReport(matrices, reference=f"the weights of {checkpoint}", notes=notes)
    matrices = analyse_models(reference, trained, layout, blocks)
    return SpectrumReport(matrices, reference=f"pretrained weights of {base}", has_changes=trained is not None,
                          notes=notes)


def analyse_input(source: str | Path, checkpoint: str | Path | None = None, blocks: Sequence[int] | None = None,
                  rank: int = 16) -> SpectrumReport:
    """:func:`analyse` for a config, a training checkpoint (its stored config) or a plain weight file."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"'{source}' does not exist; give a config file or a checkpoint.")
    if source.suffix in CONFIG_SUFFIXES:
        return analyse(source, checkpoint, blocks)
    if checkpoint is not None:
        raise ValueError(f"'{source}' is not a config (.py); --checkpoint goes with a config: "
                         "spectrum.py CONFIG --checkpoint CKPT --out DIR.")
    loaded = load_trusted_checkpoint(source)
    meta = loaded.get("meta") if isinstance(loaded, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("cfg"), str):  # mmengine's Runner stores the config text
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config_from_checkpoint.py"
            Config.fromstring(meta["cfg"], ".py").dump(str(config))
            return analyse(config, source, blocks)
    state, _ = read_state_dict(source)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"'{source}' is neither a training checkpoint nor a state dict of tensors.")
    if any(is_adapter_key(k) for k in state):
        raise ValueError(f"'{source}' holds adapters but no config; pass the config it was trained with: "
                         f"spectrum.py CONFIG --checkpoint {source} --out DIR.")
    matrices = analyse_state_dict(state, rank, blocks=blocks)
    return SpectrumReport(matrices, reference=f"the weights of {source}",
                          notes=[f"plain weight file: marking the r={rank} minor components SoMA would adapt."])
