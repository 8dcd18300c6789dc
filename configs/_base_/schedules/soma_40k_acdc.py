# The released Cityscapes -> ACDC schedule (512 and 1024 crops): soma_40k.py with a linear warm-up from 1e-6 x lr over
# 10k iterations then PolyLR to 40k, EMA of the weights from iteration 20k (mmengine EMAHook defaults, as
# FrozenAwareEMAHook) and 8 checkpoints kept.
_base_ = ["./soma_40k.py"]

param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, begin=0, end=10000, by_epoch=False),
    dict(type="PolyLR", eta_min=0, power=0.9, begin=10000, end={{_base_.max_iters}}, by_epoch=False),
    {{_base_.weight_decay_schedule}},
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=8, save_best="mean/mIoU", rule="greater"))
custom_hooks = [
    dict(type="WeightDecayLoggerHook"),
    dict(type="MergeAdaptersHook"),
    dict(type="FrozenAwareEMAHook", momentum=2e-4, update_buffers=False, begin_iter=20000),
]
