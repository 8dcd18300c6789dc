# Baseline: LoRA from HF peft (LoraConfig r=16, alpha 16, biases of the adapted layers trained; fused qkv as one
# matrix), same layers and blocks 8-23 as SoMA, GTA5 -> Cityscapes / BDD100K / Mapillary, 512 crops. Needs peft.
# No released counterpart. Recipe and checkpoint selection: those of soma_dinov2-l_gta2cbm-512.py (release protocol;
# source-only: --cfg-options default_hooks.checkpoint.save_best=None).
_base_ = ["./soma_dinov2-l_gta2cbm-512.py"]

model = dict(backbone=dict(peft=dict(_delete_=True, type="HFPeft", start_block=8,
                                     config=dict(type="LoraConfig", r=16, lora_alpha=16, bias="lora_only"))))
