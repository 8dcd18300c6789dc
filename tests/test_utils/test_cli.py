"""Counts and seeds on the tools' command lines are refused by argparse when they cannot be meant."""
import argparse

import pytest

from soma.utils.cli import non_negative_int, positive_int, random_seed


def test_accepted_values():
    assert positive_int("3") == 3 and non_negative_int("0") == 0
    assert random_seed("0") == 0 and random_seed(str(2**32 - 1)) == 2**32 - 1


@pytest.mark.parametrize("kind, text, message", [
    (positive_int, "0", "must be a positive int, got 0"),
    (positive_int, "two", "must be a positive int, got 'two'"),
    (non_negative_int, "-1", "must be an int ≥ 0, got -1"),
    (random_seed, "-1", "must be a seed from 0 to 2**32 - 1, got -1"),
    (random_seed, str(2**32), f"must be a seed from 0 to 2**32 - 1, got {2**32}"),
])
def test_refusals_name_the_value(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message.replace("*", r"\*")):
        kind(text)


def test_the_demo_refuses_zero_iterations_instead_of_taking_the_default(capsys):
    from tools.demo.run import parse_args
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--iters", "0"])
    assert stopped.value.code == 2
    assert "argument --iters: must be a positive int, got 0" in capsys.readouterr().err
