"""Fixtures of the reliability tests."""
from __future__ import annotations

import logging

import pytest


@pytest.fixture
def mm_log():
    """The messages logged through mmengine's current logger during the test (its console handler keeps the
    stream it found at start, which pytest's capture fixtures do not see)."""
    from mmengine.logging import MMLogger

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Collect(level=logging.DEBUG)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)
