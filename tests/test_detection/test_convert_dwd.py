"""tools/convert_datasets/dwd.py links the downloaded DWD folders into data/dwd/<domain>: aliases, re-runs, errors."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from soma.convert.datasets.common import LayoutError
from soma.convert.datasets.dwd import link_dwd

from ..conftest import REPO
from .conftest import make_dwd_like


@pytest.fixture
def download(tmp_path):
    """The archives as extracted: mixed folder names, one domain wrapped in an extra folder."""
    make_dwd_like(tmp_path / "made", num_train=1, num_test=1, size=16)
    root = tmp_path / "download"
    root.mkdir()
    (tmp_path / "made/daytime_clear").rename(root / "daytime_clear")
    (tmp_path / "made/daytime_foggy").rename(root / "Daytime-Foggy")
    (tmp_path / "made/dusk_rainy").rename(root / "dusk_rainy")
    (tmp_path / "made/night_rainy").rename(root / "Night-Rainy")
    (root / "Night-Sunny").mkdir()
    (tmp_path / "made/night_sunny").rename(root / "Night-Sunny/night_sunny")
    return root


def test_links_every_domain_and_reruns_as_no_op(download, tmp_path, mmdet_scope):
    from soma.datasets import DWD_DOMAINS, DWDDataset

    out = tmp_path / "data/dwd"
    assert link_dwd(download, out).converted == 5
    for domain in DWD_DOMAINS:
        assert (out / domain / "VOC2007/Annotations").is_dir()
        assert len(DWDDataset(domain=domain, split="all", data_root=str(out), test_mode=True)) == 2
    again = link_dwd(download, out)
    assert (again.converted, again.skipped) == (0, 5)
    # Linking into the download folder itself also converges.
    assert link_dwd(download, download).converted == 3  # daytime_clear and dusk_rainy are already in place
    assert link_dwd(download, download).skipped == 5


def test_errors(download, tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        link_dwd(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "out/night_rainy").mkdir(parents=True)
    with pytest.raises(LayoutError, match="night_rainy exists and is not the DWD night_rainy folder"):
        link_dwd(download, tmp_path / "out")
    shutil.rmtree(download / "dusk_rainy")
    with pytest.raises(LayoutError, match=r"missing \['dusk_rainy'\]"):
        link_dwd(download, tmp_path / "out2")


@pytest.mark.slow  # a subprocess run of the tool's command line
def test_command_line_reports_layout_errors(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tools/convert_datasets/dwd.py"), str(tmp_path / "none"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("error: expected the downloaded DWD folders")
