"""Configs: loading them, and the mistakes in them named before anything is built.

* :mod:`.loading`: a syntax error names the config file (or the ``_base_`` file) and the line;
* :mod:`.type_names`: every ``type`` against the registries (adapter methods against ``soma.peft``'s), with the key
  path and the closest registered names;
* :mod:`.legacy`: keys of mmseg 0.x / mmcv 1.x configs that mmengine silently ignores, with their modern spelling;
* :mod:`.classes`: the head's ``num_classes`` against the classes of the dataset(s);
* :mod:`.options`: options that a SoMA metric, hook or dataset does not take, with the closest valid names;
* :mod:`.domains`: per-domain metrics need datasets whose samples carry their ``domain``, and average their domains;
* :mod:`.padding`: a crop that is not a multiple of the ViT patch is padded; said once, with the cost;
* :mod:`.loops`: ``train_cfg``/``val_cfg``/``test_cfg`` keys against the loop classes;
* :mod:`.datasets`: the datasets inside wrappers, and their pipeline for unlabelled images;
* :mod:`.run`: what tools/train.py and tools/test.py share: their options and loading the run's config.
"""
from .classes import check_num_classes
from .datasets import image_only_pipeline, leaf_datasets
from .domains import check_domain_datasets, check_mean_over
from .legacy import check_legacy_keys
from .loading import load_config
from .loops import check_loop_options
from .options import check_component_options
from .padding import warn_patch_padding
from .run import add_runner_arguments, load_run_config
from .type_names import UnknownTypeError, check_config_types

__all__ = ["load_config", "check_config_types", "UnknownTypeError", "check_legacy_keys", "check_num_classes",
           "check_component_options", "check_domain_datasets", "check_mean_over", "warn_patch_padding",
           "check_loop_options", "leaf_datasets", "image_only_pipeline", "add_runner_arguments", "load_run_config"]
