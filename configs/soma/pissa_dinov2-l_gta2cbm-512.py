# Baseline: PiSSA (r=16 principal singular components instead of SoMA's minor ones, same layers and blocks),
# GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
# No released counterpart. Recipe and checkpoint selection: those of soma_dinov2-l_gta2cbm-512.py (release protocol;
# source-only: --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=dict(init="principal")))
