# SoMA on DINOv3-7B (r=16 on blocks 13-39): GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops, batch 4, one GPU.
# No published number: DINOv3 appeared after the SoMA paper, and no DG codebase adapts the 7B.
# Choices: r=16 as for ViT-L (30.7M trainable backbone parameters, 0.46 % of 6.7B); blocks from a third of the depth
# (13 of 40, as 8 of 24 for L); with_cp: each trained block keeps only its input; bf16 frozen base: 13.4 GB, not 27.
# Outputs of blocks 9/19/29/39 (the DINOv3 release's dense-task layers). Recipe and checkpoint selection:
# those of soma_dinov2-l_gta2cbm-512.py (release protocol;
# source-only: --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(
    backbone=dict(
        type="DINOv3",
        arch="7b",
        out_indices=(9, 19, 29, 39),
        with_cp=True,
        frozen_dtype="bfloat16",  # frozen weights and SoMA residuals in bf16 after the float64 SVD split
        peft=dict(type="SoMA", r=16, init="minor", start_block=13, train_bias=True),
        init_cfg=dict(type="Pretrained", checkpoint="checkpoints/dinov3_vit7b16_converted.pth"),
    ),
    decode_head=dict(in_channels=[4096, 4096, 4096, 4096]),
)
