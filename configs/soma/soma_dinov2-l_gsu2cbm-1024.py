# SoMA (DINOv2-L, r=16 on blocks 8-23): GTA5 + SYNTHIA + UrbanSyn -> Cityscapes / BDD100K / Mapillary, 1024 crops.
# Published: mean mIoU 73.12 over C/B/M.
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma-1024.py",
    "../_base_/datasets/gsu2cbm_1024.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]
