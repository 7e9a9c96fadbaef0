"""The one error this package raises (TemplateError), and the one it raises and catches inside (CallError). No I/O here."""

from __future__ import annotations


class TemplateError(ValueError):
    """A template that cannot be parsed or executed, in Go's words.

    ``stage`` is ``"parse"`` or ``"exec"``; ``line`` (1-based) and ``col``
    (0-based byte offset in the line, as Go counts) locate the problem when
    known; ``limit`` names the ``Limits`` field that was exceeded, if any.
    """

    def __init__(self, message: str, *, stage: str, line: int | None = None, col: int | None = None, limit: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.line = line
        self.col = col
        self.limit = limit


class CallError(Exception):
    """A builtin or a function of the caller failed; execution reports it as ``error calling NAME: MESSAGE``."""
