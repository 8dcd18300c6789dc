# SoMA (DINOv2-L, r=16 on blocks 8-23): Cityscapes -> ACDC, 512 crops (val here; test via tools/acdc_submission.py).
# Published: none at 512 crops (the released README lists ACDC test mIoU 78.75 for the 1024 config only).
# Recipe as released (docs/reproduction.md): the schedule of soma_dinov2-l_citys2acdc-1024.py (warm-up 10k, EMA from
# 20k, batch 8 in total) with 512 crops taken from images rescaled as in the 1024 setting (shortest edge
# 0.5-2.0 x 1024), a 512 model (slide 512) and validation at 1920x1080.
# Checkpoint selection: as soma_dinov2-l_citys2acdc-1024.py (release protocol; source-only:
# --cfg-options default_hooks.checkpoint.save_best=citys/mIoU).
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma.py",
    "../_base_/datasets/citys2acdc_512.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k_acdc.py",
]

train_dataloader = dict(batch_size=8)
