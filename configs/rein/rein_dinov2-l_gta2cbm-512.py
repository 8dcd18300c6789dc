# Rein (DINOv2-L; 100 tokens of rank 16 after each of the 24 blocks, linked to Mask2Former's 100 queries):
# GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
# Published: mean mIoU 64.3 over C/B/M tested at 1024x512 (Rein, arXiv:2312.04265: Cityscapes and Mapillary at
# 1024x512, BDD at 1280x720); 66.09 tested at 2048x1024, the test resolutions of this config (the SoMA benchmark's).
# Settings and their source (official release github w1oves/Rein: configs/_base_/models/rein_dinov2_mask2former.py
# and configs/dinov2/rein_dinov2_mask2former_512x512_bs1x4.py):
# * Rein: token_length=100, lora_dim=16, num_layers=24 (every block), link_token_to_query=True, scale 1e-3
#   (release defaults); the head replaces its queries by the linked ones (replace_query_feat=True), 100 queries.
# * backbone outputs blocks 7/11/15/23 at img_size 512, patch 16, no drop path (release defaults); pretrained DINOv2-L
#   with its patch kernel resampled bicubically to 16 (what Rein's converter does; inherited). Mask2Former head as in
#   the SoMA config (the release's head settings are the same).
# * optimizer: AdamW lr 1e-4, weight decay 0.05, eps 1e-8, betas (0.9, 0.999), one lr for all (no backbone
#   multiplier); no decay for norms, query/level embeddings, the tokens and the scale.
# * schedule: PolyLR (power 0.9) over 40k iterations, no warm-up, no weight-decay annealing, no EMA; batch 4 on one
#   GPU ("bs1x4"); validation every 10k; the published checkpoint is the last (iter 40000).
# * data: shortest edge resized to 0.5-2.0 x 512 (long side <= 2048), 512 crop (cat_max_ratio 0.75), flip,
#   photometric distortion, seed 42: the same as the SoMA recipe (inherited).
# * precision: the release trains in float32; here mixed precision as every benchmark config (float32:
#   --cfg-options optim_wrapper.dtype=float32).
_base_ = ["../soma/soma_dinov2-l_gta2cbm-512.py"]

model = dict(
    backbone=dict(
        peft=dict(_delete_=True, type="Rein", num_tokens=100, token_rank=16, start_block=0, end_block=None,
                  link_queries=True, query_dim=256, scale_init=1e-3),
    ),
    decode_head=dict(type="ReinMask2FormerHead", replace_query_feat=True, num_queries=100),
)
no_decay = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05, eps=1e-8),
    paramwise_cfg=dict(
        custom_keys=dict(_delete_=True, **{
            "norm": dict(decay_mult=0.0),
            "query_embed": no_decay,
            "level_embed": no_decay,
            "rein.token_a": no_decay,  # the token factors (not "rein.token": that would match rein.token_mlp)
            "rein.token_b": no_decay,
            "rein.scale": no_decay,
        }),
        norm_decay_mult=0.0,
    ),
)
param_scheduler = [dict(type="PolyLR", eta_min=0, power=0.9, begin=0, end={{_base_.max_iters}}, by_epoch=False)]
train_dataloader = dict(batch_size=4)
train_cfg = dict(val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=4000, max_keep_ckpts=3, save_best=None))
custom_hooks = [dict(type="WeightDecayLoggerHook")]
