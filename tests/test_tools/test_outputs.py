"""Tools never write over their inputs, replace earlier outputs only with --force, load checkpoints strictly and
report user errors in one line (no traceback)."""
from __future__ import annotations

import pytest


def test_export_refuses_to_overwrite_its_checkpoint(tiny_run):
    from tools.export_backbone import main

    before = tiny_run.trained.read_bytes()
    with pytest.raises(SystemExit, match=r"^error: the output '.*trained.pth' is the input '.*trained.pth'"):
        main([str(tiny_run.config), str(tiny_run.trained), str(tiny_run.trained)])
    assert tiny_run.trained.read_bytes() == before  # was replaced by the exported backbone (data loss)


def test_existing_output_needs_force(tiny_run, tmp_path, capsys):
    from tools.extract_adapter import main

    out = tmp_path / "adapter.pth"
    out.write_bytes(b"an earlier result")
    with pytest.raises(SystemExit, match=r"^error: the output '.*adapter.pth' exists; pass --force"):
        main([str(tiny_run.config), str(tiny_run.trained), str(out)])
    assert out.read_bytes() == b"an earlier result"
    main([str(tiny_run.config), str(tiny_run.trained), str(out), "--force"])
    assert "wrote" in capsys.readouterr().out and out.stat().st_size > 1000


def test_checkpoint_tools_load_strictly(tiny_run, tmp_path):
    from tools.export_backbone import main as export
    from tools.merge_adapter import main as merge

    with pytest.raises(SystemExit, match=r"^error: checkpoint '.*merged.pth' does not fit the config's model.*"
                                         r"model.backbone.peft=None"):
        export([str(tiny_run.config), str(tiny_run.merged), str(tmp_path / "backbone.pth")])
    with pytest.raises(SystemExit, match=r"^error: '.*trained.pth' is not an adapter file of "
                                         r"tools/extract_adapter.py .*tools/extract_adapter.py"):
        merge([str(tiny_run.config), str(tiny_run.trained), str(tmp_path / "merged.pth")])
    assert not (tmp_path / "backbone.pth").exists() and not (tmp_path / "merged.pth").exists()


def test_inference_output_folder_checks(tiny_run, tmp_path):
    from tools.inference import main

    images = tiny_run.data / "leftImg8bit" / "val"
    with pytest.raises(SystemExit, match=r"^error: the output folder '.*' is or lies inside the input"):
        main([str(tiny_run.config), str(tiny_run.trained), str(images), "--out", str(images / "predictions")])
    out = tmp_path / "out"
    main([str(tiny_run.config), str(tiny_run.trained), str(images), "--out", str(out)])
    with pytest.raises(SystemExit, match=r"^error: the output folder '.*out' already holds pred, overlay of an "
                                         r"earlier run; pass --force"):
        main([str(tiny_run.config), str(tiny_run.trained), str(images), "--out", str(out)])
    main([str(tiny_run.config), str(tiny_run.trained), str(images), "--out", str(out), "--force"])


def test_inference_refuses_an_adapter_file(tiny_run, tmp_path):
    from tools.inference import main

    with pytest.raises(SystemExit, match=r"^error: checkpoint '.*adapter.pth' does not fit.*adapter-only file"):
        main([str(tiny_run.config), str(tiny_run.root / "adapter.pth"), str(tiny_run.data / "leftImg8bit" / "val"),
              "--out", str(tmp_path / "out")])
