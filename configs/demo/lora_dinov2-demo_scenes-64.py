# CPU demo baseline: LoRA on the same layers, blocks and rank as SoMA (Kaiming A, zero B, base weight untouched).
_base_ = ["./soma_dinov2-demo_scenes-64.py"]
model = dict(backbone=dict(peft=dict(init="lora")))
