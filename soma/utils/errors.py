"""Errors the user can fix (a wrong checkpoint, config, path or option), and how tools report them.

A tool prints such an error as one line, ``error: <message>``, and exits with status 1; anything else (a bug)
keeps its traceback. Raise :class:`UserError` (or a subclass) for a mistake in the input; it also derives
from the built-in type that fits (``ValueError``, ``FileExistsError``, ...) where callers catch those.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """A mistake in what the user gave (checkpoint, config, path, option); the message says what to do."""


class ConfigError(UserError, ValueError):
    """A config that cannot be used as written: a syntax error, a legacy key, values that contradict."""


class OutputExistsError(UserError, FileExistsError):
    """An output path that is an input, or that exists and ``--force`` was not given."""

    def __str__(self) -> str:  # OSError would format (errno, strerror)
        return str(self.args[0])


# Expected failures that tools report without a traceback. FileNotFoundError: every missing file our code
# reports names the file and what produces it (a missing file is never a bug of the tool).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def exit_on_user_error(main: F) -> F:
    """Decorate a tool's ``main``: user errors end the program with ``error: <message>`` and status 1."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as exc:
            raise SystemExit(f"error: {exc}") from None

    return wrapped  # type: ignore[return-value]


class DataError(UserError, ValueError):
    """A dataset file that cannot be used as it is (e.g. a label map of another size than its image)."""
