# SoMA (DINOv2-L, r=16 on blocks 8-23): GTA5 + SYNTHIA + UrbanSyn -> Cityscapes / BDD100K / Mapillary, 512 crops.
# Published: mean mIoU 71.68 over C/B/M.
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma.py",
    "../_base_/datasets/gsu2cbm_512.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]
