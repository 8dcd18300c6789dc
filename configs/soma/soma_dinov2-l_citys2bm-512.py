# SoMA (DINOv2-L, r=16 on blocks 8-23): Cityscapes -> BDD100K / Mapillary, 512 crops.
# Published: mean mIoU 71.74 over B/M.
# Recipe as released (docs/reproduction.md): 40k iterations, batch 8, linear warm-up from 1e-2 x lr over 1.5k
# iterations then PolyLR, EMA of the weights from iteration 20k (mmengine EMAHook defaults, as FrozenAwareEMAHook).
# Checkpoint selection, release protocol: `best_mean_mIoU_iter_*.pth`, the best mean mIoU of the target validation
# sets, as the published numbers were picked. Source-only protocol (the best on Cityscapes val, which validation
# also scores): --cfg-options default_hooks.checkpoint.save_best=citys/mIoU
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma.py",
    "../_base_/datasets/citys2bm_512.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]

train_dataloader = dict(batch_size=8)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-2, begin=0, end=1500, by_epoch=False),
    dict(type="PolyLR", eta_min=0, power=0.9, begin=1500, end={{_base_.max_iters}}, by_epoch=False),
    {{_base_.weight_decay_schedule}},
]
default_hooks = dict(checkpoint=dict(save_best="mean/mIoU", rule="greater"))
custom_hooks = [
    dict(type="WeightDecayLoggerHook"),
    dict(type="MergeAdaptersHook"),
    dict(type="FrozenAwareEMAHook", momentum=2e-4, update_buffers=False, begin_iter=20000),
]
