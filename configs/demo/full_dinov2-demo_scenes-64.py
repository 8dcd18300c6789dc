# CPU demo baseline: full fine-tuning of the demo ViT (10x lower backbone lr than the adapters, as is usual).
_base_ = ["./soma_dinov2-demo_scenes-64.py"]
model = dict(backbone=dict(peft=None, frozen=False))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.1))))
