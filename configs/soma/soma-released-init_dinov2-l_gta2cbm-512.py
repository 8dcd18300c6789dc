# SoMA (DINOv2-L, r=16 on blocks 8-23) with the official code's initialisation: GTA5 -> C / B / M, 512 crops.
# Published: mean mIoU 68.27 over C/B/M (the official run, which started this way).
# Adapters = the 16 minor singular triplets of the *random* nn.Linear init (replayed from seed 42, the official
# runtime seed), base weights = the full pretrained W: training starts at W + B0A0, not W (docs/released_weights.md).
# Everything else as soma_dinov2-l_gta2cbm-512.py, including checkpoint selection: release protocol
# `best_mean_mIoU_iter_*.pth`; source-only (the last checkpoint): --cfg-options default_hooks.checkpoint.save_best=None
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=dict(init="released", init_seed=42)))
