# Baseline: full fine-tuning of DINOv2-L (every backbone weight trains, lr x0.5 as in the recipe),
# GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=None, frozen=False))
