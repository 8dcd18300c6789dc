"""The published Co-DINO DWD config at test size: only sizes, data root and run length differ (a config template)."""

TINY_CODINO = """
_base_ = ["{repo}/configs/soma/codino_dinov2-l_soma_dwd.py"]
model = dict(
    backbone=dict(arch="tiny", img_size=64, out_indices=(0, 1, 2, 3), peft=dict(type="SoMA", r=4, start_block=2),
                  init_cfg=None),
    neck=dict(in_channels=[64] * 4),
    num_queries=30,
    # 256 dims stay: mmdet's DINO decoder hard-codes a 128-feature sine embedding of the reference points.
    encoder=dict(num_layers=1, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=256))),
    decoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=256))),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=10)),
    test_cfg=dict(max_per_img=30),
    rpn_head=dict(feat_channels=64),
    rpn_proposal=dict(nms_pre=200, max_per_img=100),
    roi_head=dict(bbox_head=dict(fc_out_channels=64), train_cfg=dict(sampler=dict(num=64))),
    max_positive_queries=20,
)
meta_keys = {{{{_base_.det_domain_meta_keys}}}}
train_pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
                  dict(type="PackDetInputs", meta_keys=meta_keys)]
test_pipeline = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=(64, 64), keep_ratio=True),
                 dict(type="Pad", size=(64, 64), pad_val=dict(img=(114, 114, 114))),
                 dict(type="LoadAnnotations", with_bbox=True), dict(type="PackDetInputs", meta_keys=meta_keys)]
target_domains = ["daytime_foggy", "dusk_rainy", "night_rainy", "night_sunny"]
source_test = dict(type="DWDDataset", domain="daytime_clear", split="test", data_root="{data}", test_mode=True,
                   pipeline=test_pipeline)
all_domains = dict(type="ConcatDataset", datasets=[source_test] + [dict(source_test, domain=d, split="all")
                                                                   for d in target_domains])
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root="{data}", pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=all_domains)
test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=all_domains)
val_evaluator = dict(nproc=1)
test_evaluator = dict(nproc=1)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_iters={iters}, val_interval={iters})
param_scheduler = [
    dict(type="MultiStepLR", milestones=[{iters}], gamma=0.1, begin=0, end={iters}, by_epoch=False),
    dict(type="CosineAnnealingParamScheduler", param_name="weight_decay", eta_min=1e-5, begin=0, end={iters},
         by_epoch=False),
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={iters}))
randomness = dict(seed=0)
"""
