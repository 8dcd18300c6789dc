# The EVA02-L variant of dino_dinov2-l_soma_dwd.py (same detector and schedule). Plain DINO, not the published
# detector (Co-DINO: codino_eva02-l_soma_dwd.py); no EVA02 DWD number is published.
_base_ = ["./dino_dinov2-l_soma_dwd.py"]

model = dict(backbone=dict(type="EVA02", init_cfg=dict(checkpoint="checkpoints/eva02_vitl14_converted.pth")))
