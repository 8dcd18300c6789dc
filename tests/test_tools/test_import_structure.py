"""The import structure: tools are thin command lines over soma; soma never imports a tool."""
import re

import pytest

from ..conftest import REPO

TOOLS = sorted(p for p in (REPO / "tools").rglob("*.py") if p.name != "__init__.py")
TOOL_IMPORT = re.compile(r"^\s*(from|import) tools\b", re.MULTILINE)


@pytest.mark.parametrize("tool", TOOLS, ids=lambda p: str(p.relative_to(REPO / "tools")))
def test_tools_import_soma_only(tool):
    source = tool.read_text()
    assert "sys.path" not in source, "tools rely on the installed package (tools/setup.sh), not on sys.path edits"
    assert not TOOL_IMPORT.search(source), "no tool imports another tool: shared code belongs in soma"


def test_soma_never_imports_tools():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "soma").rglob("*.py") if TOOL_IMPORT.search(p.read_text())]
    assert not offenders
