# SoMA (DINOv2-L, r=16 on blocks 8-23): GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
# Published: mean mIoU 68.27 over C/B/M (SoMA, DINOv2-L).
# Recipe as released (docs/reproduction.md): 40k iterations, batch 4, EMA of the weights from iteration 12k (mmengine
# EMAHook defaults; validation, checkpoints and tools/test.sh use the averaged weights). FrozenAwareEMAHook is
# mmengine's EMAHook giving the same weights without a second copy of the frozen backbone (soma/engine/ema.py).
# Checkpoint selection, release protocol: `best_mean_mIoU_iter_*.pth`, the best mean mIoU of the target validation
# sets, as the published numbers were picked. Source-only protocol (GTA5 has no validation split: the last
# checkpoint): --cfg-options default_hooks.checkpoint.save_best=None
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma.py",
    "../_base_/datasets/gta2cbm_512.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]

default_hooks = dict(checkpoint=dict(save_best="mean/mIoU", rule="greater"))
custom_hooks = [
    dict(type="WeightDecayLoggerHook"),
    dict(type="MergeAdaptersHook"),
    dict(type="FrozenAwareEMAHook", momentum=2e-4, update_buffers=False, begin_iter=12000),
]
