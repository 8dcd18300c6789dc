# CPU demo baseline: the demo ViT frozen, only the Mask2Former head trained.
_base_ = ["./soma_dinov2-demo_scenes-64.py"]
model = dict(backbone=dict(peft=None, frozen=True))
