"""Singular-value spectra of a backbone's adapted layers, the components SoMA adapts, and how far training moved them.

    python tools/analysis/spectrum.py CONFIG --out DIR                       # pretrained spectra (init_cfg)
    python tools/analysis/spectrum.py CONFIG --checkpoint CKPT --out DIR     # + trained spectra and changes
    python tools/analysis/spectrum.py CKPT --out DIR                         # a training checkpoint (its config
                                                                             # is stored in it)
    python tools/analysis/spectrum.py WEIGHTS.pth --out DIR [--rank 16]      # a plain timm/converted backbone

Writes ``DIR/spectrum_block{NN}.png`` (one figure per block, one panel per adapted matrix: q, k and v of a fused
qkv separately; the r components SoMA adapts are marked), ``DIR/spectrum.csv`` (the numbers) and, with a trained
checkpoint, ``DIR/relative_change.png``: per matrix and per block, ``||ΔW|| / ||W_adapted||`` (the change
relative to the rank-r part SoMA took over at initialisation) and ``||ΔW|| / ||W||`` (relative to the whole
pretrained weight), defined in soma/analysis/spectrum/. A short table is printed.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from soma.analysis.spectrum import format_table, spectrum_to_folder
from soma.utils import OutputExistsError
from soma.utils.cli import non_negative_int, positive_int


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", metavar="CONFIG_OR_CHECKPOINT",
                        help="a config (pretrained weights from its init_cfg), a training checkpoint (its config "
                             "is stored in it) or a plain backbone weight file")
    parser.add_argument("--checkpoint", help="with a CONFIG: a trained checkpoint (unmerged or merged) to compare")
    parser.add_argument("--out", required=True, help="output folder for the PNGs and CSV")
    parser.add_argument("--blocks", type=non_negative_int, nargs="+",
                        help="only these block indices (default: all adapted)")
    parser.add_argument("--rank", type=positive_int, default=16, help="plain weight files: r minor components to mark")
    parser.add_argument("--force", action="store_true", help="replace the figures of an earlier run in --out")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        report, written = spectrum_to_folder(args.source, args.out, args.checkpoint, args.blocks, args.rank,
                                             force=args.force)
    except (FileNotFoundError, ValueError, OutputExistsError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(format_table(report))
    print(f"wrote {len(written)} files under {args.out}")


if __name__ == "__main__":
    main()
