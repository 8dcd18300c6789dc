"""Strict checkpoint loading: a checkpoint that does not fit the model is refused, with the reason in words.

mmengine's Runner loads ``load_from``/``--resume`` checkpoints with ``strict=False`` and only logs what did not
fit, so a checkpoint of another architecture, rank or class count is evaluated as a partly random model and a
wrong number is printed as a result. Everything that turns a checkpoint into the model that is evaluated,
resumed or exported goes through :func:`check_checkpoint_fits` (tools/test.py, tools/train.py through
:class:`soma.engine.SoMARunner`, tools/inference.py, tools/acdc_submission.py and the adapter tools).

It compares names and shapes of every tensor and refuses missing, unexpected and wrongly shaped ones. The
message gives their counts and first names, and recognises the usual causes:

* an adapter-only file of tools/extract_adapter.py (→ rebuild a full checkpoint with tools/merge_adapter.py);
* a merged checkpoint (the adapted layers as plain layers) with a config that has adapter layers
  (→ ``model.backbone.peft=None``), or an adapted checkpoint with a config without them (the model's adapter
  tensors are found through the adapter protocol, ``soma.peft.adapter_keys``; the checkpoint's others by
  ``soma.peft.state_adapter_keys``);
* weights nested under another key than ``state_dict`` (``model``, ...), and a backbone-only file (a pretrained
  or exported backbone, which belongs in ``init_cfg``) given as a whole model's checkpoint;
* another adapter rank (a difference along the adapter matrices' rank axis only) or other adapted blocks, other
  options of an adapter module (Rein's ``num_tokens``, ``start_block``, ...), another number of classes, another
  backbone width/depth/image size (both values shown);
* for a Runner checkpoint, the model settings of the config it was trained with that differ from this one.

``strict=False`` (the tools' ``--non-strict``) loads what fits and logs what was not loaded instead.
Pretrained backbone files (``init_cfg``) are not loaded here: they have their own checks, which allow the
documented differences (a release file's unused heads, a resampled patch kernel).

Modules: :mod:`.mismatch` (comparing), :mod:`.causes` and :mod:`.config_diff` (naming why), :mod:`.checked` (loading
only what fits), :mod:`.trained` (a trained model's checkpoint, merged or not).
"""
from .checked import check_checkpoint_fits, describe_mismatch, load_checkpoint_checked, load_state_dict_checked
from .config_diff import config_changes
from .mismatch import CheckpointMismatchError, StateDictMismatch, checkpoint_state_dict, compare_state_dict
from .trained import is_merged_state, load_trained_weights, read_state_dict

__all__ = ["CheckpointMismatchError", "StateDictMismatch", "check_checkpoint_fits", "checkpoint_state_dict",
           "compare_state_dict", "config_changes", "describe_mismatch", "is_merged_state", "load_checkpoint_checked",
           "load_state_dict_checked", "load_trained_weights", "read_state_dict"]
