"""How long importing a module takes in a fresh interpreter, and what it loads (tools/benchmark/import_time.py)."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass

# Top-level packages whose presence after an import says it pulled in more than the adapter library needs.
HEAVY = ("mmengine", "mmcv", "mmseg", "mmdet", "timm", "peft", "transformers")

_PROBE = """
import json, sys, time
start = time.perf_counter()
import {module}
seconds = time.perf_counter() - start
print(json.dumps(dict(seconds=seconds, modules=len(sys.modules),
                      heavy=sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))))
"""


@dataclass
class ImportTime:
    """Median wall time of ``import module`` over fresh interpreters, the modules it leaves loaded and which of
    :data:`HEAVY` among them."""

    module: str
    seconds: float
    runs: list[float]
    modules: int
    heavy: list[str]


def _probe(module: str, python: str) -> dict:
    output = subprocess.run([python, "-c", _PROBE.format(module=module, heavy=HEAVY)], capture_output=True,
                            text=True, check=True).stdout
    return json.loads(output.splitlines()[-1])


def measure_imports(modules: list[str], repeats: int = 5, python: str = sys.executable) -> list[ImportTime]:
    """Import each of ``modules`` in ``repeats`` fresh interpreters, the modules taking turns round by round so that
    they share the machine's load; a first, untimed round warms the file cache."""
    reports = {module: _probe(module, python) for module in modules}
    runs: dict[str, list[float]] = {module: [] for module in modules}
    for _ in range(repeats):
        for module in modules:
            reports[module] = _probe(module, python)
            runs[module].append(reports[module]["seconds"])
    return [ImportTime(module, statistics.median(runs[module]), runs[module], reports[module]["modules"],
                       reports[module]["heavy"]) for module in modules]


def measure_import(module: str, repeats: int = 5, python: str = sys.executable) -> ImportTime:
    """:func:`measure_imports` of one module."""
    return measure_imports([module], repeats, python)[0]


def format_table(results: list[ImportTime]) -> str:
    """A markdown table of the measurements."""
    lines = ["| import | median s | runs (s) | modules loaded | of " + ", ".join(HEAVY) + " |", "|---|---|---|---|---|"]
    for result in results:
        runs = ", ".join(f"{run:.2f}" for run in result.runs)
        lines.append(f"| `import {result.module}` | {result.seconds:.2f} | {runs} | {result.modules} | "
                     f"{', '.join(result.heavy) or 'none'} |")
    return "\n".join(lines)
