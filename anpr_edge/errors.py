"""User-facing errors.

Every mistake a user can make (a bad config key, a missing file, an unreachable stream) is raised as an
``AnprError`` subclass whose message names the problem; the CLI prints the message, never a traceback,
and exits with ``exit_code``.
"""

from __future__ import annotations


class AnprError(Exception):
    """An error caused by input or environment, reported to the user as one clear message."""

    exit_code = 1


class ConfigError(AnprError):
    """The configuration is invalid (unknown key, wrong type, missing file...)."""

    exit_code = 2


class ModelNotAvailableError(AnprError):
    """A model file is missing (not trained yet, or a wrong path) or cannot be loaded."""

    exit_code = 2


class BackendError(AnprError):
    """An inference backend cannot be created or rejected its inputs."""

    exit_code = 2


class SourceError(AnprError):
    """A frame source cannot be opened, or stopped delivering frames (ended, stalled, disconnected).

    ``retryable`` tells the service whether reconnecting may help (a stalled stream) or not (a missing
    file).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
