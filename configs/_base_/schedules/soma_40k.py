# Training recipe of SoMA as released: AdamW, backbone lr x0.5, PolyLR, cosine-annealed weight decay, no gradient
# clipping, 40k iterations, validation and checkpoints every 4k.
max_iters = 40000
optim_wrapper = dict(
    # Mixed precision on GPU: bf16 where the GPU has it, else fp16 with dynamic loss scaling; float32 with the plain
    # OptimWrapper on CPU. Resolved per machine by tools/train.py (soma.config.run.resolve_amp).
    type="AmpOptimWrapper",
    constructor="FrozenAwareOptimWrapperConstructor",  # frozen weights: one log line, not one warning each
    dtype="auto",
    loss_scale="dynamic",
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05, eps=1e-8),
    paramwise_cfg=dict(
        custom_keys={
            "backbone": dict(lr_mult=0.5),
            "query_embed": dict(lr_mult=1.0, decay_mult=0.0),
            "query_feat": dict(lr_mult=1.0, decay_mult=0.0),
            "level_embed": dict(lr_mult=1.0, decay_mult=0.0),
        },
        norm_decay_mult=0.0,
    ),
)
# Weight decay annealed by a cosine to 1e-5 (absolute, as released: groups that start without decay rise to 1e-5).
weight_decay_schedule = dict(type="CosineAnnealingParamScheduler", param_name="weight_decay", eta_min=1e-5,
                             begin=0, end=max_iters, by_epoch=False)
param_scheduler = [
    dict(type="PolyLR", eta_min=0, power=0.9, begin=0, end=max_iters, by_epoch=False),
    weight_decay_schedule,
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=4000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=4000, max_keep_ckpts=6),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="SegVisualizationHook"),
    # Named (not custom_hooks) so that configs adding hooks keep them: resumed runs continue the same random
    # stream; every label map is checked against its image's size.
    random_state=dict(type="RandomStateHook"),
    label_size_check=dict(type="LabelSizeCheckHook"),
)
custom_hooks = [
    dict(type="WeightDecayLoggerHook"),  # the annealed decay appears in the log as weight_decay
    dict(type="MergeAdaptersHook"),  # validate/test with SoMA merged (plain-backbone speed); train unmerged
]
