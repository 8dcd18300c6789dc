# SoMA on DINOv3-L (r=16 on blocks 8-23): Cityscapes -> ACDC, 512 crops.
# The one-line backbone swap of soma_dinov2-l_citys2acdc-512.py (plus the converted DINOv3 weights).
# No published number: DINOv3 appeared after the SoMA paper.
# Recipe and checkpoint selection: those of soma_dinov2-l_citys2acdc-512.py (release protocol;
# source-only: --cfg-options default_hooks.checkpoint.save_best=citys/mIoU).
_base_ = ["./soma_dinov2-l_citys2acdc-512.py"]

model = dict(backbone=dict(type="DINOv3", init_cfg=dict(checkpoint="checkpoints/dinov3_vitl16_converted.pth")))
