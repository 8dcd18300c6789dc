"""soma.analysis.spectrum (tools/analysis/spectrum.py): spectra PNGs, the adapted components marked, and how far
training moved them."""
import csv
import subprocess
import sys

import pytest
import torch
from PIL import Image

from ..conftest import REPO


def test_pretrained_spectra_of_a_config(tiny_run, tmp_path):
    from soma.analysis.spectrum import analyse_input, write_report

    report = analyse_input(tiny_run.config)
    # tiny arch, SoMA from block 2 on q, k, v (fused qkv split in three), proj, fc1, fc2
    blocks = sorted({m.block for m in report.matrices})
    assert blocks == [2, 3] and len(report.matrices) == 2 * 6
    base = torch.load(tiny_run.base, weights_only=True)
    proj = next(m for m in report.matrices if m.block == 2 and m.layer.endswith("attn.proj"))
    expected = torch.linalg.svdvals(base["blocks.2.attn.proj.weight"].double()).numpy()
    assert abs(proj.reference - expected).max() < 1e-5
    written = write_report(report, tmp_path / "out")
    pictures = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in pictures} == {"spectrum_block02.png", "spectrum_block03.png"}
    for picture in pictures:
        width, height = Image.open(picture).size
        assert width > 300 and height > 200


@pytest.mark.slow  # float64 spectra of a trained checkpoint (7 s)
def test_changes_of_a_trained_checkpoint(tiny_run, tmp_path):
    from soma.analysis.spectrum import analyse_input, write_report

    untrained = analyse_input(tiny_run.config, tiny_run.untrained)
    assert all(m.relative_to_adapted < 1e-6 for m in untrained.matrices)  # nothing moved at initialisation
    for checkpoint in (tiny_run.trained, tiny_run.merged):  # the same changes, merged or not
        report = analyse_input(tiny_run.config, checkpoint)
        assert all(m.relative_to_adapted > 1e-3 for m in report.matrices)
        assert all(m.relative_to_weight < m.relative_to_adapted for m in report.matrices)
    written = write_report(report, tmp_path / "out")
    assert tmp_path / "out" / "relative_change.png" in written
    rows = list(csv.DictReader(open(tmp_path / "out" / "spectrum.csv")))
    assert len(rows) == len(report.matrices)


@pytest.mark.slow  # a subprocess run of the tool's command line
def test_command_line_and_errors(tiny_run, tmp_path):
    result = subprocess.run([sys.executable, "tools/analysis/spectrum.py", str(tiny_run.base), "--rank", "4",
                             "--out", str(tmp_path / "plain")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "plain" / "spectrum_block00.png").is_file()
    result = subprocess.run([sys.executable, "tools/analysis/spectrum.py", str(tmp_path / "missing.py"),
                             "--out", str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "missing.py' does not exist" in result.stderr


def test_an_earlier_report_is_kept_unless_forced(tiny_run, tmp_path):
    from soma.analysis.spectrum import spectrum_to_folder
    from soma.utils import OutputExistsError

    out = tmp_path / "report"
    spectrum_to_folder(tiny_run.base, out, blocks=[3], rank=4)
    first = (out / "spectrum.csv").read_bytes()
    with pytest.raises(OutputExistsError, match="already holds spectrum.csv.*--force"):
        spectrum_to_folder(tiny_run.base, out, blocks=[3], rank=4)
    assert (out / "spectrum.csv").read_bytes() == first
    spectrum_to_folder(tiny_run.base, out, blocks=[3], rank=4, force=True)
    with pytest.raises(OutputExistsError, match="is or lies inside the input"):
        spectrum_to_folder(tiny_run.base, tiny_run.base, rank=4)
