"""Typed errors that carry what a user needs to fix the problem.

The CLI turns any :class:`TunedeckError` into one clear line on stderr and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class TunedeckError(Exception):
    """Base class for every error we expect a user to see."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(TunedeckError):
    """A config file that cannot be read or used; names the file, line and key."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.column = column
        self.key = key
        where = ""
        if self.file:
            where = self.file
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        if key:
            where += f"{key}: "
        super().__init__(where + message, hint=hint)
        self.bare_message = message


class StaleFileError(ConfigError):
    """Refusing to overwrite a file that changed on disk since it was loaded."""


class RunNotFound(TunedeckError):
    exit_code = 3


class RunBusy(TunedeckError):
    """Another launch holds the output_dir lock, or the run is already active."""

    exit_code = 4


class LaunchError(TunedeckError):
    exit_code = 5
