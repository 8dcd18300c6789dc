"""Loading a config file: a syntax or name error names the config file (or the ``_base_`` file) and the line, read
off the traceback.
"""
from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmengine.config import Config

from soma.utils.checkpoint import CONFIG_SUFFIXES
from soma.utils.errors import ConfigError


# ---------------------------------------------------------------------------------------------- parsing
def _config_files(path: Path, seen: list[Path]) -> list[Path]:
    """``path`` and its ``_base_`` files, recursively, in the order mmengine reads them (bases first)."""
    if path in seen or path.suffix != ".py" or not path.is_file():
        return seen
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError:
        seen.append(path)
        return seen
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                continue
            for base in [bases] if isinstance(bases, str) else bases:
                if isinstance(base, str):
                    _config_files((path.parent / base).resolve(), seen)
    seen.append(path)
    return seen


def _where(files: list[Path], exc: BaseException) -> str:
    """``'<file>' line N`` of the config line that raised ``exc`` while mmengine executed it."""
    if isinstance(exc, SyntaxError):
        for file in files:
            try:
                ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
            except SyntaxError as found:
                return f"'{file}' line {found.lineno}: {found.msg}" + (f": {found.text.strip()}" if found.text else "")
        return f"'{files[-1]}': {exc.msg}"
    # mmengine runs a temporary copy of each file: take the line number of the last frame outside the library.
    import mmengine

    library = (str(Path(mmengine.__file__).parent), str(Path(__file__).parent))
    lineno = next((tb.tb_lineno for tb in reversed(list(_frames(exc.__traceback__)))
                   if not tb.tb_frame.f_code.co_filename.startswith(library)), None)
    name = getattr(exc, "name", None)
    for file in reversed(files):
        lines = file.read_text(encoding="utf-8").splitlines()
        if lineno and lineno <= len(lines) and (name is None or name in lines[lineno - 1]):
            return f"'{file}' line {lineno}: {type(exc).__name__}: {exc}: {lines[lineno - 1].strip()}"
    return f"'{files[-1]}': {type(exc).__name__}: {exc}"


def _frames(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def load_config(path: str | os.PathLike) -> Config:
    """``Config.fromfile`` whose errors in the config's own code name the file and line (mmengine reports a
    syntax error as ``File "<unknown>"`` and an undefined name without any file).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: ``path`` is no config file (e.g. a checkpoint given in its place), or it or one of its
            ``_base_`` files is not valid Python, or fails when executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file '{path}' does not exist.")
    if path.suffix not in CONFIG_SUFFIXES:  # mmengine's OSError would name neither the file nor the mix-up
        is_checkpoint = path.suffix in (".pth", ".pt", ".bin", ".safetensors")
        swapped = (" It looks like a checkpoint: were CONFIG and CHECKPOINT swapped? The config comes first (e.g. "
                   "tools/test.py CONFIG CHECKPOINT).") if is_checkpoint else ""
        raise ConfigError(f"'{path}' is not a config file (a config is a {', '.join(CONFIG_SUFFIXES)} file).{swapped}")
    try:
        return Config.fromfile(str(path))
    except (SyntaxError, NameError, TypeError, AttributeError, ImportError, IndexError, ZeroDivisionError) as exc:
        raise ConfigError(f"config {_where(_config_files(path.resolve(), []), exc)}") from None
