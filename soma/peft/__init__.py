"""Adapter methods for any ``nn.Module``, in pure PyTorch: SoMA (and PiSSA, LoRA), DoRA, Rein and any HF peft tuner.

SoMA paper: "SoMA: Singular Value Decomposed Minor Components Adaptation for Domain Generalizable Representation
Learning", arXiv:2412.04077. Importing this package imports torch (and numpy) only: nothing of OpenMMLab, and peft or
transformers only when an HF method or export is used.

Layout, as peft's tuners: the method-independent parts are :mod:`.base` (the adapter protocol every method
implements: :class:`AdapterLayer`, :class:`AdapterModule`), :mod:`.model` (finding, freezing, merging, unloading,
counting), :mod:`.registry` (method configs and methods by name, ``peft=dict(type=...)``), :mod:`.state` (adapter
state dicts) and :mod:`.decompose` (the exact float64 partial SVD); :mod:`.lowrank` is what the low-rank methods
share (config, layer, injection). Each method is one module that registers itself when imported: :mod:`.soma`
(SoMA, PiSSA and LoRA initialisations), :mod:`.dora`, :mod:`.rein`, :mod:`.hf_peft`.

Example::

    model = timm.create_model("vit_large_patch14_dinov2", pretrained=True)
    apply_soma(model, SoMAConfig(r=16, target_modules=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),
                                 start_block=8))
    print(trainable_parameters(model))
"""
from .base import AdapterLayer, AdapterModule, OptionChange, adapter_tensor_names, register_adapter_layer_view
from .decompose import svd_components
from .dora import DoRAConfig, DoRALinear, apply_dora, initialize_dora
from .hf_peft import HFPeftConfig, HFTunerLayer, apply_hf_peft, initialize_hf_peft
from .lowrank import LowRankConfig, LowRankLinear, inject_low_rank_layers
from .model import (TrainableSummary, adapter_key_layer, adapter_keys, adapter_layers, adapter_modules,
                    is_adapter_key, mark_only_adapters_trainable, merge_adapters, merge_soma, method_trained_tensors,
                    state_adapter_keys, trainable_parameters, unload_adapters, unload_soma, unmerge_adapters,
                    unmerge_soma)
from .registry import PEFT_METHODS, PeftMethod, build_peft_config, peft_method, register_peft_method
from .rein import ReinConfig, Reins, apply_rein, initialize_rein, rein_modules
from .soma import SoMAConfig, SoMALinear, apply_soma, initialize_soma, soma_layers
from .state import adapter_state_dict, load_adapter_state_dict, load_soma_state_dict, soma_state_dict

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
    # the adapter protocol and the functions that work for every method
    "AdapterLayer", "AdapterModule", "LowRankConfig", "LowRankLinear", "register_adapter_layer_view",
    "adapter_layers", "adapter_modules", "merge_adapters", "unmerge_adapters", "unload_adapters",
    "mark_only_adapters_trainable", "inject_low_rank_layers", "adapter_state_dict", "load_adapter_state_dict",
    "is_adapter_key", "adapter_key_layer", "adapter_tensor_names", "adapter_keys", "state_adapter_keys",
    "method_trained_tensors", "OptionChange",
    # the other methods
    "DoRAConfig", "DoRALinear", "apply_dora", "initialize_dora",
    "HFPeftConfig", "HFTunerLayer", "apply_hf_peft", "initialize_hf_peft",
    # adapter methods by name (`peft=dict(type=...)`)
    "PEFT_METHODS", "PeftMethod", "build_peft_config", "peft_method", "register_peft_method",
    # Rein (arXiv:2312.04265)
    "ReinConfig", "Reins", "apply_rein", "initialize_rein", "rein_modules",
]
