# Baseline: frozen DINOv2-L (only the Mask2Former head trains), GTA5 -> Cityscapes / BDD100K / Mapillary, 512.
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=None, frozen=True))
