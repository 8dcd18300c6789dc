# CPU demo baseline: PiSSA, i.e. the *principal* singular components adapted instead of SoMA's minor ones.
_base_ = ["./soma_dinov2-demo_scenes-64.py"]
model = dict(backbone=dict(peft=dict(init="principal")))
