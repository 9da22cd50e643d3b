"""Errors the harness raises for bad input.

Every error a user can cause (a wrong path, a missing obs key, an unknown model name, …) is a
:class:`CgcbenchError`. The CLI prints its one-line message and exits with code 2; nothing is
written for a run that fails input validation.
"""

from __future__ import annotations

from collections.abc import Iterable


class CgcbenchError(Exception):
    """A user-facing error with a one-line message that names the input, the field and the fix."""

    exit_code = 2


class InputError(CgcbenchError, ValueError):
    """An input file or one of its fields is invalid."""


class UnknownNameError(CgcbenchError, KeyError):
    """A model, suite, dataset or variant name is not registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        valid_list = sorted(valid)
        self.kind, self.name, self.valid = kind, name, valid_list
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid_list) or '(none)'}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class ChecksumError(CgcbenchError):
    """A downloaded or cached file does not match its declared sha256."""


class NotApplicableError(CgcbenchError):
    """An adapter lacks a capability a suite needs; recorded as ``not_applicable``, not a failure."""
