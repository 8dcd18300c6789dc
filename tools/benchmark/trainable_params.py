"""Trainable backbone parameters of every adapter method, frozen and full fine-tuning, as a markdown table.

    python tools/benchmark/trainable_params.py                 # DINOv2-L, the G->CBM configs
    python tools/benchmark/trainable_params.py --arch tiny     # the tests' 4-block arch (adapted blocks scaled)

Each row is the backbone of a GTA5 -> Cityscapes/BDD100K/Mapillary config (configs/*/*_dinov2-l_gta2cbm-512.py:
frozen, full fine-tuning, SoMA, PiSSA, LoRA, DoRA, HF peft LoRA, Rein, and any method config added there), built on the
meta device: shapes only, no memory, no weights read. Counts are of the backbone alone (the decode head trains in
every setting). "adapters" counts the methods' own tensors (A, B, magnitudes, tokens), "biases" the trained
tensors of the adapted layers' base layers, "adapted matrices" counts a fused q/k/v adapted slice by slice as 3.
"""
from soma.analysis.trainable_params import main

if __name__ == "__main__":
    main()
