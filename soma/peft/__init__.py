"""SoMA adaptation for any ``nn.Module``, in pure PyTorch (arXiv:2412.04077).

Example::

    model = timm.create_model("vit_large_patch14_dinov2", pretrained=True)
    apply_soma(model, SoMAConfig(r=16, target_modules=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),
                                 start_block=8))
    print(trainable_parameters(model))
"""
from .config import SoMAConfig
from .decompose import svd_components
from .layer import SoMALinear
from .model import (TrainableSummary, apply_soma, initialize_soma, load_soma_state_dict, merge_soma,
                    soma_layers, soma_state_dict, trainable_parameters, unload_soma, unmerge_soma)

__all__ = [
    "SoMAConfig", "SoMALinear", "apply_soma", "initialize_soma", "merge_soma", "unmerge_soma", "unload_soma",
    "soma_layers", "soma_state_dict", "load_soma_state_dict", "trainable_parameters", "TrainableSummary",
    "svd_components",
]
