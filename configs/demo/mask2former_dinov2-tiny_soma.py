# The published Mask2Former + DINOv2 SoMA model at demo size: 4-block 64-dim ViT, narrow head, 64x64 crops.
# Only sizes differ from configs/_base_/models/mask2former_dinov2-l_soma.py.
_base_ = ["../_base_/models/mask2former_dinov2-l_soma.py"]

crop_size = (64, 64)
num_classes = 19
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch="tiny", img_size=64, out_indices=(0, 1, 2, 3),
                  peft=dict(type="SoMA", r=4, start_block=2), init_cfg=None),
    decode_head=dict(
        in_channels=[64] * 4, feat_channels=32, out_channels=32, num_queries=8,
        pixel_decoder=dict(
            encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=dict(embed_dims=32, num_heads=4),
                                                      ffn_cfg=dict(embed_dims=32, feedforward_channels=64))),
            positional_encoding=dict(num_feats=16)),
        positional_encoding=dict(num_feats=16),
        transformer_decoder=dict(
            num_layers=2,
            layer_cfg=dict(self_attn_cfg=dict(embed_dims=32, num_heads=4),
                           cross_attn_cfg=dict(embed_dims=32, num_heads=4),
                           ffn_cfg=dict(embed_dims=32, feedforward_channels=64))),
        train_cfg=dict(num_points=256)),
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(43, 43)),
)
