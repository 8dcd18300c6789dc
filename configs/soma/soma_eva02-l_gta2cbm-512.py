# SoMA on EVA-02-L (r=16 on blocks 8-23): GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
# The one-line backbone swap of soma_dinov2-l_gta2cbm-512.py (plus the converted EVA-02 weights).
# No published number is recorded for EVA-02-L in DESIGN §3; compare with the DINOv2-L row (68.27).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(type="EVA02", init_cfg=dict(checkpoint="checkpoints/eva02_vitl14_converted.pth")))
