# SoMA (DINOv2-L, r=16 on blocks 8-23): Cityscapes -> BDD100K / Mapillary, 512 crops.
# Published: mean mIoU 71.74 over B/M.
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma.py",
    "../_base_/datasets/citys2bm_512.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]

train_dataloader = dict(batch_size=8)
