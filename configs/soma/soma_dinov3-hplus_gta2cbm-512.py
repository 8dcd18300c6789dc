# SoMA on DINOv3-H+ (r=16 on blocks 11-31): GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops, batch 4, one GPU.
# No published number: DINOv3 appeared after the SoMA paper.
# Choices: r=16 as for ViT-L (10.2M trainable backbone parameters, 1.2 % of 840M); blocks from a third of the depth
# (11 of 32, as 8 of 24 for L); with_cp as for the 7B (tools/analysis/memory_plan.py). Outputs of blocks
# 7/15/23/31 (4 evenly spaced, as the DINOv3 release). Recipe and checkpoint selection:
# those of soma_dinov2-l_gta2cbm-512.py (release protocol;
# source-only: --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(
    backbone=dict(
        type="DINOv3",
        arch="huge_plus",
        out_indices=(7, 15, 23, 31),
        with_cp=True,
        frozen_dtype="bfloat16",  # frozen weights and SoMA residuals in bf16 after the float64 SVD split
        peft=dict(type="SoMA", r=16, init="minor", start_block=11, train_bias=True),
        init_cfg=dict(type="Pretrained", checkpoint="checkpoints/dinov3_vith16plus_converted.pth"),
    ),
    decode_head=dict(in_channels=[1280, 1280, 1280, 1280]),
)
