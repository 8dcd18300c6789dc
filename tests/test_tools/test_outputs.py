"""The checkpoint tools and inference never write over their inputs, replace earlier outputs only with --force,
load checkpoints strictly, and report user errors in one line (no traceback)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from soma.utils import OutputExistsError
from soma.weights import CheckpointMismatchError

from ..conftest import REPO


def test_export_refuses_to_overwrite_its_checkpoint(tiny_run):
    from soma.apis.adapters import export_backbone

    before = tiny_run.trained.read_bytes()
    with pytest.raises(OutputExistsError, match=r"^the output '.*trained.pth' is the input '.*trained.pth'"):
        export_backbone(str(tiny_run.config), str(tiny_run.trained), str(tiny_run.trained))
    assert tiny_run.trained.read_bytes() == before  # was replaced by the exported backbone (data loss)


def test_existing_output_needs_force(tiny_run, tmp_path):
    from soma.apis.adapters import extract_adapter

    out = tmp_path / "adapter.pth"
    out.write_bytes(b"an earlier result")
    with pytest.raises(OutputExistsError, match=r"^the output '.*adapter.pth' exists; pass --force"):
        extract_adapter(str(tiny_run.config), str(tiny_run.trained), str(out))
    assert out.read_bytes() == b"an earlier result"
    adapter = extract_adapter(str(tiny_run.config), str(tiny_run.trained), str(out), force=True)
    assert adapter["backbone"]["adapters"] and out.stat().st_size > 1000


def test_checkpoint_tools_load_strictly(tiny_run, tmp_path):
    from soma.apis.adapters import export_backbone, merge_adapter

    with pytest.raises(CheckpointMismatchError, match=r"^checkpoint '.*merged.pth' does not fit the config's model.*"
                                                      r"model.backbone.peft=None"):
        export_backbone(str(tiny_run.config), str(tiny_run.merged), str(tmp_path / "backbone.pth"))
    with pytest.raises(CheckpointMismatchError, match=r"^'.*trained.pth' is not an adapter file of "
                                                      r"tools/extract_adapter.py .*tools/extract_adapter.py"):
        merge_adapter(str(tiny_run.config), str(tiny_run.trained), str(tmp_path / "merged.pth"))
    assert not (tmp_path / "backbone.pth").exists() and not (tmp_path / "merged.pth").exists()


def test_inference_output_folder_checks(tiny_run, tmp_path):
    from soma.apis.inference import run_inference

    images = tiny_run.data / "leftImg8bit" / "val"
    with pytest.raises(OutputExistsError, match=r"^the output folder '.*' is or lies inside the input"):
        run_inference(tiny_run.config, tiny_run.trained, images, images / "predictions")
    out = tmp_path / "out"
    run_inference(tiny_run.config, tiny_run.trained, images, out)
    with pytest.raises(OutputExistsError, match=r"^the output folder '.*out' already holds pred, overlay of an "
                                                r"earlier run; pass --force"):
        run_inference(tiny_run.config, tiny_run.trained, images, out)
    assert len(run_inference(tiny_run.config, tiny_run.trained, images, out, force=True)) == 4


def test_inference_refuses_an_adapter_file(tiny_run, tmp_path):
    from soma.apis.inference import run_inference

    with pytest.raises(CheckpointMismatchError, match=r"^checkpoint '.*adapter.pth' does not fit.*adapter-only file"):
        run_inference(tiny_run.config, tiny_run.root / "adapter.pth", tiny_run.data / "leftImg8bit" / "val",
                      tmp_path / "out")


@pytest.mark.slow  # subprocess runs of the command lines
def test_command_lines_report_user_errors_in_one_line(tiny_run, tmp_path):
    """Every tool turns a user error into ``error: ...`` and exit status 1, before building any model."""
    images = tiny_run.data / "leftImg8bit" / "val"
    adapter = tmp_path / "adapter.pth"
    adapter.write_bytes(b"an earlier result")
    config, trained = str(tiny_run.config), str(tiny_run.trained)
    cases = {
        "tools/export_backbone.py": ([config, trained, trained], r"the output '.*trained.pth' is the input"),
        "tools/extract_adapter.py": ([config, trained, str(adapter)], r"the output '.*adapter.pth' exists; pass "
                                                                      r"--force"),
        "tools/merge_adapter.py": ([config, trained, str(tmp_path / "merged.pth")],
                                   r"'.*trained.pth' is not an adapter file of tools/extract_adapter.py"),
        "tools/inference.py": ([config, trained, str(images), "--out", str(images / "predictions")],
                               r"the output folder '.*predictions' is or lies inside the input"),
    }
    for tool, (arguments, message) in cases.items():
        result = subprocess.run([sys.executable, tool, *arguments], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 1, (tool, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (tool, result.stderr[-2000:])
        last = result.stderr.strip().splitlines()[-1]
        assert re.match(f"^error: {message}", last), (tool, last)
    assert adapter.read_bytes() == b"an earlier result"
