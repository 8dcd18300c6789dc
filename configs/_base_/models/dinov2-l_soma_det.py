# Detection trunk shared by the DETR-family detectors (DINO now, Co-DINO later): data preprocessing, a DINOv2-L
# backbone adapted with SoMA (r=16, blocks 8-23) and its simple feature pyramid, as published.
# The pyramid is the backbone's parameter-free bilinear resizes of blocks 7/11/15/23 (strides 4/8/16/32, 1024
# channels each); ChannelMapper projects every level to the detector's 256 channels.
# Swap the backbone with a one-line edit, e.g. model = dict(backbone=dict(type="EVA02")).
custom_imports = dict(imports=["soma.models", "soma.datasets", "soma.evaluation", "soma.engine"],
                      allow_failed_imports=False)

embed_dims = 256
model = dict(
    data_preprocessor=dict(
        type="DetDataPreprocessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,  # the stride-32 level must tile the padded image exactly
    ),
    backbone=dict(
        type="DINOv2",
        arch="large",
        img_size=1024,  # position-embedding grid; other input sizes are resampled on the fly
        patch_size=16,
        out_indices=(7, 11, 15, 23),
        out_scales=(4.0, 2.0, 1.0, 0.5),
        peft=dict(type="SoMA", r=16, init="minor", start_block=8, train_bias=True),
        init_cfg=dict(type="Pretrained", checkpoint="checkpoints/dinov2_vitl14_converted.pth"),
    ),
    neck=dict(
        type="ChannelMapper",
        in_channels=[1024, 1024, 1024, 1024],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=dict(type="GN", num_groups=32),
        num_outs=4,
    ),
)
