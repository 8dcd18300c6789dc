# SoMA (DINOv2-L, r=16 on blocks 8-23): Cityscapes -> ACDC, 1024 crops (val here; test via tools/acdc_submission.py).
# Published: ACDC test mIoU 78.75.
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma-1024.py",
    "../_base_/datasets/citys2acdc_1024.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]

train_dataloader = dict(batch_size=8)
