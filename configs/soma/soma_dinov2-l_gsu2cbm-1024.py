# SoMA (DINOv2-L, r=16 on blocks 8-23): GTA5 + SYNTHIA + UrbanSyn -> Cityscapes / BDD100K / Mapillary, 1024 crops.
# Published: mean mIoU 73.12 over C/B/M.
# Recipe as released (docs/reproduction.md): 40k iterations, batch 4, EMA of the weights from iteration 16k (mmengine
# EMAHook defaults, as FrozenAwareEMAHook); BDD100K tested at 2048x1024. Stage 1 of soma_dinov2-l_gsuc16-2cbm-1024.py.
# Checkpoint selection, release protocol: `best_mean_mIoU_iter_*.pth`, the best mean mIoU of the target validation
# sets, as the published numbers were picked. Source-only protocol (the sources have no validation split: the last
# checkpoint): --cfg-options default_hooks.checkpoint.save_best=None
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma-1024.py",
    "../_base_/datasets/gsu2cbm_1024.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]

default_hooks = dict(checkpoint=dict(save_best="mean/mIoU", rule="greater"))
custom_hooks = [
    dict(type="WeightDecayLoggerHook"),
    dict(type="MergeAdaptersHook"),
    dict(type="FrozenAwareEMAHook", momentum=2e-4, update_buffers=False, begin_iter=16000),
]
