"""The demo ViT's pretraining schedule runs for any number of steps and keeps the documented demo's."""
import warnings

import pytest
import torch

from soma.demo.pretrain import pretrain, warmup_fraction


@pytest.mark.parametrize("steps", [300, 400, 40])
def test_the_demos_schedules_keep_their_ten_percent_warmup(steps):
    assert warmup_fraction(steps) == 0.1


def test_every_step_count_has_a_schedule_that_runs():
    for steps in range(1, 60):  # 10 steps at pct_start=0.1 divided by zero in OneCycleLR
        parameter = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([parameter], lr=1.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=steps,
                                                       pct_start=warmup_fraction(steps))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lr_scheduler.step() before optimizer.step() is not the question here
            for _ in range(steps):
                optimizer.step()
                schedule.step()


def test_no_steps_is_refused(tmp_path):
    with pytest.raises(ValueError, match="`steps` must be a positive int, got 0"):
        pretrain(tmp_path / "vit.pth", steps=0)
