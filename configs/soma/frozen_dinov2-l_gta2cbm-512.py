# Baseline: frozen DINOv2-L (only the Mask2Former head trains), GTA5 -> Cityscapes / BDD100K / Mapillary, 512.
# As released: PolyLR only (no weight-decay annealing), no EMA, validation and checkpoints every 10k (4 kept).
# Checkpoint selection: as soma_dinov2-l_gta2cbm-512.py (release protocol; source-only:
# --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=None, frozen=True))
param_scheduler = [dict(type="PolyLR", eta_min=0, power=0.9, begin=0, end={{_base_.max_iters}}, by_epoch=False)]
train_cfg = dict(val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000, max_keep_ckpts=4))
custom_hooks = [dict(type="WeightDecayLoggerHook")]
