"""Predict on an image or a folder of images and write coloured predictions and overlays.

    python tools/inference.py CONFIG CHECKPOINT IMAGE_OR_DIR --out DIR [--device cpu] [--opacity 0.5]

Segmentation configs (mmseg) write, for each image ``NAME``:

* ``DIR/pred/NAME.png``: the predicted class map as a palette PNG of the input's size (pixel values are the
  train ids, shown in the dataset's colours; ``PIL.Image.open(...)`` gives the ids, ``.convert("RGB")`` the
  colours);
* ``DIR/overlay/NAME.png``: the colours blended over the image (``--opacity``), with class names.

Detection configs (``default_scope = "mmdet"``) write ``DIR/boxes/NAME.png``: the boxes with class labels and
scores above ``--score-thr`` drawn on the image. Images of a folder keep their sub-folders under these folders.

CHECKPOINT may be a training checkpoint (SoMA adapters unmerged) or a merged one written by
tools/merge_adapter.py (plain backbone, no SoMA layers): the kind is recognised from its keys. Any other
checkpoint that does not fit the config's model is refused with the likely cause (``--non-strict`` loads what
fits). The output folder must not be (or lie inside) the input folder; one holding the outputs of an earlier
run is reused only with ``--force``.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from soma.apis.inference import run_inference
from soma.utils.runtime import setup_runtime
from soma.utils import exit_on_user_error


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the config the checkpoint was trained with")
    parser.add_argument("checkpoint", help="training checkpoint, or a merged one from tools/merge_adapter.py")
    parser.add_argument("inputs", metavar="IMAGE_OR_DIR", help="an image file or a folder (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda:0 if available, else cpu)")
    parser.add_argument("--opacity", type=float, default=0.5, help="opacity of the colours in overlays (0..1)")
    parser.add_argument("--score-thr", type=float, default=0.3, help="detection: lowest score of a drawn box")
    parser.add_argument("--force", action="store_true", help="replace the outputs of an earlier run in --out")
    parser.add_argument("--non-strict", action="store_true",
                        help="load a checkpoint that does not fit the config: only the tensors that fit (logged)")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_runtime()  # mmcv's op settings (SOMA_MSDA_PYTORCH, named errors for missing CUDA ops) for detectors
    try:
        written = run_inference(args.config, args.checkpoint, args.inputs, args.out, device=args.device,
                                opacity=args.opacity, score_thr=args.score_thr, force=args.force,
                                strict=not args.non_strict)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {len(written)} files under {args.out}")


if __name__ == "__main__":
    main()
