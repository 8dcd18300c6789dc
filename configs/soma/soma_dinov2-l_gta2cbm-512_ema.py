# SoMA (DINOv2-L) GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops, with an EMA of the weights from
# iteration 12k (DESIGN §1.3, optional). Validation uses the averaged weights and checkpoints store them as
# `state_dict` (mmengine's EMAHook swaps them in, so tools/test.sh evaluates the EMA model).
# Published: mean mIoU 68.27 over C/B/M (the published recipe; EMA is an option on top).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

custom_hooks = [
    dict(type="WeightDecayLoggerHook"),
    dict(type="MergeAdaptersHook"),
    dict(type="EMAHook", ema_type="ExponentialMovingAverage", momentum=2e-4, begin_iter=12000, update_buffers=True),
]
