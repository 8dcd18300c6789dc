# Baseline: DoRA (r=16 on the same layers and blocks 8-23 as SoMA: LoRA init plus a trained magnitude per output
# feature), GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
# No released counterpart. Recipe and checkpoint selection: those of soma_dinov2-l_gta2cbm-512.py (release protocol;
# source-only: --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=dict(_delete_=True, type="DoRA", r=16, start_block=8, train_bias=True)))
