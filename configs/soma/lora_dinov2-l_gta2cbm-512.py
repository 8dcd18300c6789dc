# Baseline: LoRA (r=16, same layers and blocks 8-23 as SoMA; base weights untouched, B = 0 at init),
# GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=dict(init="lora")))
