# The demo's SoMA run with the rest of a benchmark recipe's cycle (tools/demo/run.py --variants soma_ema; the GPU
# check's training run): validation every 100 iterations on the four styles, and an EMA of the weights from
# iteration 100 of 200 (mmengine's EMAHook, as the G->CBM and ACDC recipes from 12k/20k of 40k), which validation,
# the checkpoint and tools/test.sh use. Everything else is soma_dinov2-demo_scenes-64.py.
_base_ = ["./soma_dinov2-demo_scenes-64.py"]

train_cfg = dict(val_interval=100)
val_cfg = dict(type="ValLoop")
val_dataloader = {{_base_.test_dataloader}}
val_evaluator = {{_base_.test_evaluator}}
custom_hooks = [
    dict(type="WeightDecayLoggerHook"),
    dict(type="MergeAdaptersHook"),
    dict(type="EMAHook", ema_type="ExponentialMovingAverage", momentum=2e-2, update_buffers=False, begin_iter=100),
]
