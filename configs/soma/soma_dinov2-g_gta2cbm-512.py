# SoMA on DINOv2-g (r=16 on blocks 13-39): GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops, batch 4, one GPU.
# No published number: the SoMA paper stops at ViT-L.
# Choices: r=16 as for ViT-L (13.0M trainable backbone parameters); blocks from a third of the depth (13 of 40, as 8
# of 24 for L); the packed SwiGLU fc1 decomposed as gate and value; with_cp (tools/analysis/memory_plan.py). Outputs
# of blocks 9/19/29/39 (the DINOv2 release's dense heads). Recipe and checkpoint selection:
# those of soma_dinov2-l_gta2cbm-512.py (release protocol;
# source-only: --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(
    backbone=dict(
        arch="giant",
        out_indices=(9, 19, 29, 39),
        with_cp=True,
        frozen_dtype="bfloat16",  # frozen weights and SoMA residuals in bf16 after the float64 SVD split
        peft=dict(type="SoMA", r=16, init="minor", start_block=13, train_bias=True),
        init_cfg=dict(type="Pretrained", checkpoint="checkpoints/dinov2_vitg14_patch16-bicubic.pth"),
    ),
    decode_head=dict(in_channels=[1536, 1536, 1536, 1536]),
)
