# The DINOv2-L + SoMA Mask2Former of mask2former_dinov2-l_soma.py at 1024 crops (slide 1024, stride 683).
_base_ = ["./mask2former_dinov2-l_soma.py"]

crop_size = (1024, 1024)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=1024),
    test_cfg=dict(crop_size=crop_size, stride=(683, 683)),
)
