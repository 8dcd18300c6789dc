"""Every mistake of a user ends a tool in one line, `error: <message>`, naming the cause and what to do; bugs keep
their tracebacks (docs/errors.md rows 70-89).

The tools' `main` functions are called in-process (tests import no tool): each case fails before or while the
tiny model is built, so no training step runs.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

from ..conftest import REPO
from ..test_tools.test_train import CONFIG, make_cityscapes_like


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """The tiny config on 1 image per split, and a checkpoint of its model."""
    from soma.models import build_model

    root = tmp_path_factory.mktemp("user_errors")
    make_cityscapes_like(root / "data", num_images=1)
    config = root / "tiny.py"
    config.write_text(CONFIG.format(repo=REPO, data=root / "data"))
    model = build_model(str(config), pretrained=False)
    torch.save(dict(state_dict=model.state_dict(), meta={}), root / "iter_2.pth")
    return root, config, root / "iter_2.pth"


def one_line_error(main, argv) -> str:
    """The message a tool ends with: `error: ...` on one line (SystemExit), never a traceback."""
    with pytest.raises(SystemExit) as ended:
        main([str(a) for a in argv])
    message = str(ended.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def test_an_unreadable_checkpoint_names_the_mix_up(setting, tmp_path):
    from soma.apis.testing import main

    _, config, checkpoint = setting
    truncated = tmp_path / "iter_4.pth"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])  # a copy cut short
    message = one_line_error(main, [config, truncated, "--work-dir", tmp_path / "a"])
    assert f"cannot read checkpoint '{truncated}' (truncated or not a torch file?)" in message
    pointer = tmp_path / "last_checkpoint"  # mmengine's text file that names the latest checkpoint
    pointer.write_text(str(checkpoint))
    message = one_line_error(main, [config, pointer, "--work-dir", tmp_path / "b"])
    assert f"it is a text file naming the checkpoint '{checkpoint}' (mmengine's `last_checkpoint`)" in message


def test_config_and_checkpoint_swapped(setting, tmp_path):
    from soma.apis.testing import main

    _, config, checkpoint = setting
    message = one_line_error(main, [checkpoint, config, "--work-dir", tmp_path])
    assert f"'{checkpoint}' is not a config file" in message and "were CONFIG and CHECKPOINT swapped?" in message


@pytest.mark.parametrize("option, expected", [
    ("train_cfg.max_iter=1", "`train_cfg.max_iter` is no option of IterBasedTrainLoop, which takes "
                             "['dynamic_intervals', 'max_iters', 'val_begin', 'val_interval']. Did you mean: "
                             "'max_iters'"),
    ("train_cfg.by_epoch=False", "`train_cfg` has both `type` ('IterBasedTrainLoop') and `by_epoch`"),
    ("val_cfg.fp32=True", "`val_cfg.fp32` is no option of ValLoop"),
    ("model.backbone.peft.r=-1", "`model.backbone.peft`: `r` must be a positive int, got -1."),
    ("model.backbone.peft.rank=4", "`model.backbone.peft`: unknown SoMA option(s) ['rank']"),
    ("model.backbone.peft.start_block=6", "`model.backbone.peft.start_block`=6 lies beyond the blocks DINOv2-tiny "
                                          "runs (0-3, "),
    ("model.backbone.arch=huge", "`arch` must be one of"),
    ("model.backbone.init_cfg.checkpoint=base.pth", "--cfg-options model.backbone.init_cfg.checkpoint=...: "
                                                    "`model.backbone.init_cfg` is None in the config"),
])
def test_config_options_the_model_or_loops_refuse(setting, tmp_path, option, expected):
    from soma.apis.training import main

    _, config, _ = setting
    message = one_line_error(main, [config, "--work-dir", tmp_path / "work", "--cfg-options", option])
    assert expected in message


def test_a_pretrained_file_of_another_model(setting, tmp_path):
    from soma.apis.training import main

    _, config, _ = setting
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    child = tmp_path / "resnet_pretrained.py"
    child.write_text(f'_base_ = ["{config}"]\nmodel = dict(backbone=dict(init_cfg=dict(_delete_=True, '
                     f'type="Pretrained", checkpoint="{tmp_path / "resnet.pth"}")))\n')
    message = one_line_error(main, [child, "--work-dir", tmp_path / "work"])
    assert f"pretrained checkpoint '{tmp_path / 'resnet.pth'}' lacks" in message


def test_malformed_cfg_options_and_a_launcher_without_torchrun(setting, tmp_path, capsys, monkeypatch):
    from soma.apis.training import main

    _, config, _ = setting
    with pytest.raises(SystemExit) as ended:
        main([str(config), "--cfg-options", "train_cfg.max_iters"])
    assert ended.value.code == 2  # argparse's usage error
    assert "--cfg-options takes KEY=VALUE items (e.g. train_cfg.max_iters=1000); got 'train_cfg.max_iters'" in \
        capsys.readouterr().err
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    message = one_line_error(main, [config, "--work-dir", tmp_path / "work", "--launcher", "pytorch"])
    assert "--launcher pytorch is for processes started by torchrun" in message and "dist_train.sh" in message


@pytest.fixture
def unwritable_dir(tmp_path):
    """A folder nobody can create files in: no write permission, or (for root, whom permissions do not stop) the
    immutable attribute."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root without `chattr +i`: no folder can be made unwritable")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)])


def test_an_unwritable_output_folder_is_refused_before_the_model_is_built(setting, unwritable_dir, monkeypatch):
    from soma.apis import testing

    _, config, checkpoint = setting
    monkeypatch.setattr(testing, "build_runner", lambda cfg: pytest.fail("built the model before the check"))
    work = unwritable_dir / "work"
    message = one_line_error(testing.main, [config, checkpoint, "--work-dir", work])
    assert message.startswith(f"error: cannot write to --work-dir '{work}' (it would be created in "
                              f"'{unwritable_dir}'): ")
    from soma.utils import UserError, check_output_file

    with pytest.raises(UserError, match=r"cannot write to the output's folder"):
        check_output_file(unwritable_dir / "adapter.pth", [checkpoint])


def test_a_device_this_machine_does_not_have(setting, tmp_path, monkeypatch):
    from soma.apis import inference
    from soma.utils import UserError

    _, config, checkpoint = setting
    monkeypatch.setattr(inference, "init_model", lambda *args, **kwargs: pytest.fail("built the model first"))
    image = next((setting[0] / "data/leftImg8bit/val").rglob("*.png"))
    for device, expected in (("cuda:99", r"--device 'cuda:99': this machine (has no CUDA GPU|shows \d+ GPU)"),
                             ("gpu0", r"--device 'gpu0' is no torch device; give e.g. cpu, cuda or cuda:0")):
        with pytest.raises(UserError, match=expected):
            inference.run_inference(config, checkpoint, image, tmp_path / "out", device=device)
