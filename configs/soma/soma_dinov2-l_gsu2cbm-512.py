# SoMA (DINOv2-L, r=16 on blocks 8-23): GTA5 + SYNTHIA + UrbanSyn -> Cityscapes / BDD100K / Mapillary, 512 crops.
# Published: mean mIoU 71.68 over C/B/M.
# Recipe as released (docs/reproduction.md): 40k iterations, batch 4, no EMA.
# Checkpoint selection, release protocol: `best_mean_mIoU_iter_*.pth`, the best mean mIoU of the target validation
# sets, as the published numbers were picked. Source-only protocol (the sources have no validation split: the last
# checkpoint): --cfg-options default_hooks.checkpoint.save_best=None
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma.py",
    "../_base_/datasets/gsu2cbm_512.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]

default_hooks = dict(checkpoint=dict(save_best="mean/mIoU", rule="greater"))
