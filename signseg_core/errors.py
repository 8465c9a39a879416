"""Error types that speak to the user.

Every error the engine raises on purpose is one of these (or a plain ``ValueError`` for a bad
argument), so the CLI and the dashboard can show its message as it is.
"""

from __future__ import annotations

from pathlib import Path


class SignsegError(Exception):
    """Base class of the engine's own errors."""


class WeightsNotFoundError(SignsegError, FileNotFoundError):
    """A model's or generator's weights are not on this machine.

    The message is one sentence naming the missing file and where to put it.
    """

    def __init__(self, what: str, path: str | Path, hint: str = ""):
        self.what = what
        self.path = Path(path)
        msg = f"The weights for {what} are missing: put {self.path.name} at {self.path}"
        msg += f" ({hint})." if hint else "."
        super().__init__(msg)


class CheckpointError(SignsegError, ValueError):
    """A checkpoint exists but cannot be used (truncated, wrong architecture, wrong format)."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle would have to run code (import a non-allow-listed global) to be loaded."""


class UnknownNameError(SignsegError, KeyError):
    """A registry was asked for a name it does not hold; the message lists the choices."""

    def __init__(self, kind: str, name: str, choices):
        choices = sorted(choices)
        shown = ", ".join(choices[:40]) + (", ..." if len(choices) > 40 else "")
        super().__init__(f"unknown {kind} {name!r}; choose from: {shown}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class StoreError(SignsegError):
    """The result store cannot be opened where it was asked for (one sentence saying why)."""
