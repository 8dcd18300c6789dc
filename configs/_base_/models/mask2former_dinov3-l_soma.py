# Mask2Former (mmseg) on a DINOv3-L backbone adapted with SoMA (r=16, blocks 8-23): the DINOv2-L model with the
# backbone swapped. DINOv3 is patch 16 natively, so only the type and the pretrained file change.
_base_ = ["./mask2former_dinov2-l_soma.py"]

model = dict(
    backbone=dict(
        type="DINOv3",
        init_cfg=dict(checkpoint="checkpoints/dinov3_vitl16_converted.pth"),
    ),
)
