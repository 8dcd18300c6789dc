# The demo's SoMA run with the rest of a benchmark recipe's cycle (tools/demo/run.py --variants soma_ema; the GPU
# check's training run): validation every 100 iterations on the four styles, and an EMA of the weights from iteration
# 100 of 200 (FrozenAwareEMAHook: mmengine's EMAHook, as the G->CBM and ACDC recipes from 12k/20k of 40k), which
# validation, the checkpoint and tools/test.sh use. Everything else is soma_dinov2-demo_scenes-64.py.
_base_ = ["./soma_dinov2-demo_scenes-64.py"]

train_cfg = dict(val_interval=100)
# _delete_: the base sets these to None (no validation), which mmengine refuses to merge a dict into.
val_cfg = dict(_delete_=True, type="ValLoop")
val_dataloader = dict(_delete_=True, **_base_.test_dataloader)
val_evaluator = dict(_delete_=True, **_base_.test_evaluator)
custom_hooks = [
    dict(type="WeightDecayLoggerHook"),
    dict(type="MergeAdaptersHook"),
    dict(type="FrozenAwareEMAHook", momentum=2e-2, update_buffers=False, begin_iter=100),
]
