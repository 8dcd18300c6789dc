"""Argument types for the command lines of the tools: a bad count is refused by argparse in one usage line,
never passed on as 0 or -1 (which some options would silently turn into their default)."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer ≥ 1 (counts: steps, iterations, images, repeats, sizes)."""
    return _int_in_range(text, 1, None, "a positive int")


def non_negative_int(text: str) -> int:
    """An integer ≥ 0 (block indices, warm-up steps)."""
    return _int_in_range(text, 0, None, "an int ≥ 0")


def random_seed(text: str) -> int:
    """A seed numpy accepts (0 ≤ seed < 2**32), which mmengine's ``randomness.seed`` passes on to it."""
    return _int_in_range(text, 0, 2**32 - 1, "a seed from 0 to 2**32 - 1")


def _int_in_range(text: str, minimum: int, maximum: int | None, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value
