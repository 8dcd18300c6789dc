# SoMA with the initialisation the official code (github ysj9909/SoMA) actually ran: adapters = the 16 minor
# singular triplets of the *random* nn.Linear init (replayed from seed 42, the official runtime seed), base weights
# = the full pretrained W, so training starts at W + B0A0 instead of exactly W (docs/released_weights.md).
# GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops; everything else as soma_dinov2-l_gta2cbm-512.py.
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=dict(init="released", init_seed=42)))
