"""SoMA (Singular value decomposed Minor components Adaptation) for any ``nn.Module``, in pure PyTorch.

Paper: "SoMA: Singular Value Decomposed Minor Components Adaptation for Domain Generalizable Representation
Learning", arXiv:2412.04077. Layout follows peft's tuners/lora: :mod:`.config` (the dataclass), :mod:`.layer`
(the adapted Linear), :mod:`.model` (injection, freezing, merging), :mod:`.state` (adapter state dicts) and
:mod:`.decompose` (the exact float64 partial SVD).

Example::

    model = timm.create_model("vit_large_patch14_dinov2", pretrained=True)
    apply_soma(model, SoMAConfig(r=16, target_modules=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),
                                 start_block=8))
    print(trainable_parameters(model))
"""
from .config import SoMAConfig
from .decompose import svd_components
from .layer import SoMALinear
from .model import (TrainableSummary, apply_soma, initialize_soma, merge_soma, soma_layers, trainable_parameters,
                    unload_soma, unmerge_soma)
from .registry import PEFT_METHODS, PeftMethod, build_peft_config, peft_method, register_peft_method
from .rein import ReinConfig, Reins, apply_rein, initialize_rein, rein_modules
from .state import load_soma_state_dict, soma_state_dict

register_peft_method("SoMA", SoMAConfig, apply_soma, initialize_soma)
register_peft_method("Rein", ReinConfig, apply_rein, initialize_rein)

__all__ = [
    "SoMAConfig",
    "SoMALinear",
    "apply_soma",
    "merge_soma",
    "unmerge_soma",
    "unload_soma",
    "soma_state_dict",
    "load_soma_state_dict",
    "trainable_parameters",
    "TrainableSummary",
    "svd_components",
    # also used by the backbones and tools: deferred SVD split, and the adapted layers by name
    "initialize_soma",
    "soma_layers",
    # adapter methods by name (`peft=dict(type=...)`)
    "PEFT_METHODS", "PeftMethod", "build_peft_config", "peft_method", "register_peft_method",
    # Rein (arXiv:2312.04265)
    "ReinConfig", "Reins", "apply_rein", "initialize_rein", "rein_modules",
]
