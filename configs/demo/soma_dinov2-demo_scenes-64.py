# CPU demo (tools/demo/run.py): SoMA on the demo's own pretrained ViT (DINOv2 backbone, arch "demo", patch 8),
# Mask2Former at demo size, trained on the generated source-style scenes and tested on source + night, fog and
# palette styles. A mechanics demo, not the paper's numbers: only sizes differ from the published configs.
_base_ = [
    "../_base_/models/mask2former_dinov2-l_soma.py",
    "../_base_/datasets/demo_scenes.py",
    "../_base_/default_runtime.py",
    "../_base_/schedules/soma_40k.py",
]

crop_size = (64, 64)
max_iters = 200
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch="demo", img_size=64, patch_size=8, out_indices=(1, 3, 4, 5),
                  peft=dict(type="SoMA", r=8, start_block=3),
                  init_cfg=dict(type="Pretrained", checkpoint="checkpoints/demo_vit_pretrained.pth")),
    decode_head=dict(
        in_channels=[128] * 4, feat_channels=64, out_channels=64, num_queries=16,
        pixel_decoder=dict(
            encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=dict(embed_dims=64, num_heads=4),
                                                      ffn_cfg=dict(embed_dims=64, feedforward_channels=128))),
            positional_encoding=dict(num_feats=32)),
        positional_encoding=dict(num_feats=32),
        transformer_decoder=dict(
            num_layers=3,
            layer_cfg=dict(self_attn_cfg=dict(embed_dims=64, num_heads=4),
                           cross_attn_cfg=dict(embed_dims=64, num_heads=4),
                           ffn_cfg=dict(embed_dims=64, feedforward_channels=128))),
        train_cfg=dict(num_points=1024)),
    test_cfg=dict(mode="whole"),
)
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type="PolyLR", eta_min=0, power=0.9, begin=0, end=max_iters, by_epoch=False),
    dict(type="CosineAnnealingParamScheduler", param_name="weight_decay", eta_min_ratio=2e-4,
         begin=0, end=max_iters, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters)
# No validation during training: the demo evaluates the final checkpoint once, with tools/test.sh.
val_cfg = val_dataloader = val_evaluator = None
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_last=True),
                     visualization=dict(type="SegVisualizationHook", draw=False))
randomness = dict(seed=0)
