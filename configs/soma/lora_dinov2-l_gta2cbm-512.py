# Baseline: LoRA (r=16, same layers and blocks 8-23 as SoMA; base weights untouched, B = 0 at init),
# GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
# No released counterpart. Recipe and checkpoint selection: those of soma_dinov2-l_gta2cbm-512.py (release protocol;
# source-only: --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=dict(init="lora")))
