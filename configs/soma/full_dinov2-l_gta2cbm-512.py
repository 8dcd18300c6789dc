# Baseline: full fine-tuning of DINOv2-L, GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops.
# As released: the blocks' attention and MLP weights train at backbone lr x0.01; patch/position embeddings, the
# cls token, norms and layer scales stay frozen; PolyLR only (no weight-decay annealing), no EMA.
# Checkpoint selection: as soma_dinov2-l_gta2cbm-512.py (release protocol; source-only:
# --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=None, frozen=False, freeze_norms_and_embeddings=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.01)}))
param_scheduler = [dict(type="PolyLR", eta_min=0, power=0.9, begin=0, end={{_base_.max_iters}}, by_epoch=False)]
custom_hooks = [dict(type="WeightDecayLoggerHook")]
