"""Compare methods over seeds: a markdown table of per-domain mIoU (or mAP) as mean ± 95 % CI and a bar plot.

    python tools/analysis/compare_runs.py RUN [RUN ...] --out DIR [--reference NAME] [--seeds N ...]
                                          [--allow FIELD ...] [--metric mIoU|mAP] [--skip-failed] [--force]

Each RUN is the work dir of a ``tools/test.py`` run of a trained checkpoint (or a quoted glob of such folders,
e.g. ``'work_dirs/study/*/seed_*'``). Runs are grouped by method (the tested config's name) and paired by the
training seed that ``metrics.json`` records. Writes ``DIR/comparison.md`` (the table, also printed) and
``DIR/comparison.png``. Runs whose training configs differ in more than the method and the seed are refused
unless ``--allow FIELD`` names the difference; failed runs (no metrics) and seeds missing from a method are named
and refused (``--skip-failed``, ``--seeds`` leave them out explicitly). The statistics are defined in
soma/analysis/compare_runs.py.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from soma.analysis.compare_runs import compare_to_folder
from soma.utils import exit_on_user_error
from soma.utils.cli import random_seed


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="test-run work dirs, or quoted glob patterns of them")
    parser.add_argument("--out", required=True, help="folder for comparison.md and comparison.png")
    parser.add_argument("--reference", help="method the others are compared with (paired over seeds)")
    parser.add_argument("--seeds", type=random_seed, nargs="+",
                        help="compare only these seeds (every method needs them)")
    parser.add_argument("--allow", nargs="+", default=[], metavar="FIELD",
                        help="config keys (or key prefixes) that may differ between runs besides method and seed")
    parser.add_argument("--metric", choices=["mIoU", "mAP"], help="default: what the runs' metrics hold")
    parser.add_argument("--skip-failed", action="store_true",
                        help="leave out run folders without results (named under the table) instead of stopping")
    parser.add_argument("--force", action="store_true", help="replace the outputs of an earlier comparison in --out")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    table, written = compare_to_folder(args.runs, args.out, reference=args.reference, seeds=args.seeds,
                                       metric=args.metric, allow=args.allow, skip_failed=args.skip_failed,
                                       force=args.force)
    print(table)
    print(f"wrote {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
