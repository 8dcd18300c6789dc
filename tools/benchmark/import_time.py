"""Import time of ``soma.peft`` next to ``torch`` and HF ``peft`` (fresh interpreters, taking turns), and what each
loads.

    python tools/benchmark/import_time.py [--repeats 5] [--modules torch peft soma.peft]
"""
from __future__ import annotations

import argparse
import importlib.util

from soma.analysis.import_time import format_table, measure_imports
from soma.utils.cli import positive_int


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="fresh interpreters per module (median reported)")
    parser.add_argument("--modules", nargs="+", default=["torch", "peft", "soma.peft"])
    args = parser.parse_args(argv)
    found = [module for module in args.modules if importlib.util.find_spec(module.split(".")[0]) is not None]
    print(format_table(measure_imports(found, args.repeats)))


if __name__ == "__main__":
    main()
