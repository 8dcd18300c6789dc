# SoMA on EVA-02-L (r=16 on blocks 8-23): GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
# The one-line backbone swap of soma_dinov2-l_gta2cbm-512.py (plus the converted EVA-02 weights).
# No published number for EVA-02-L; compare with the DINOv2-L row (68.27).
# Recipe and checkpoint selection: those of soma_dinov2-l_gta2cbm-512.py (release protocol;
# source-only: --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(type="EVA02", init_cfg=dict(checkpoint="checkpoints/eva02_vitl14_converted.pth")))
