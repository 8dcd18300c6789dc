# Baseline: PiSSA (r=16 principal singular components instead of SoMA's minor ones, same layers and blocks),
# GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=dict(init="principal")))
