"""Write a trained SoMA backbone as a Hugging Face peft LoRA adapter on the original pretrained weights.

    python tools/export_peft_adapter.py CONFIG CHECKPOINT OUT_DIR [--force]

OUT_DIR gets ``adapter_config.json`` and ``adapter_model.safetensors``, which ``peft.PeftModel.from_pretrained``
loads onto timm's model of the backbone's architecture with the config's ``init_cfg`` weights (the exact
trained change, rank 2r per adapted matrix). CHECKPOINT is a training checkpoint or an adapter file of
tools/extract_adapter.py; OUT_DIR's adapter files are replaced only with ``--force``.
"""
from __future__ import annotations

import argparse

from soma.apis.export import export_peft_adapter
from soma.utils import exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the config the checkpoint was trained with")
    parser.add_argument("checkpoint", help="training checkpoint or adapter file (tools/extract_adapter.py)")
    parser.add_argument("out_dir", help="output folder for adapter_config.json and adapter_model.safetensors")
    parser.add_argument("--force", action="store_true", help="replace the adapter files in OUT_DIR")
    args = parser.parse_args(argv)
    export = export_peft_adapter(args.config, args.checkpoint, args.out_dir, force=args.force)
    ranks = sorted(set(export.ranks.values()))
    print(f"wrote {args.out_dir}: LoRA on {len(export.ranks)} modules (ranks {ranks}, "
          f"bias={export.adapter_config['bias']!r})")
    print(f"base model: {export.timm_model} with the weights of {export.base_checkpoint}")
    print(f"then: peft.PeftModel.from_pretrained(base_model, {str(args.out_dir)!r})")
    for note in export.notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
