# The EVA02-L variant of codino_dinov2-l_soma_dwd.py (same detector, recipe and batch notes there). The published
# DWD numbers were obtained with DINOv2-L; no EVA02 number is published and no GPU run of this config exists yet.
_base_ = ["./codino_dinov2-l_soma_dwd.py"]

model = dict(backbone=dict(type="EVA02", init_cfg=dict(checkpoint="checkpoints/eva02_vitl14_converted.pth")))
