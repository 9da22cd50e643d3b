"""Progress of long steps inside a library call, reported to whoever hosts the call.

Pre-training steps, fine-tuning epochs and text-vector encoding can take minutes. ``cgc``
reports them through :func:`task`; the host decides how they are shown by installing a
:class:`ProgressSink` with :func:`reporting_to` — the ``cgcbench`` CLI nests them as rich bars
under its matrix bar on a terminal and prints a few plain lines into a log file. Without a
host the default sink only writes milestones to the ``cgc.progress`` logger, so a library call
prints nothing on its own.

Examples
--------
>>> from cgc.progress import task
>>> with task("fine-tuning", total=3) as t:
...     for i in range(3):
...         t.update(i + 1, status=f"loss {1.0 / (i + 1):.2f}")

"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol

log = logging.getLogger(__name__)


class ProgressTask(Protocol):
    """One long step being reported."""

    def update(self, completed: int, status: str = "") -> None:
        """``completed`` units of the total are done; ``status`` is a short free text."""
        ...

    def milestone(self, text: str) -> None:
        """Report an event worth a line of its own (e.g. a validation loss)."""
        ...

    def close(self) -> None:
        """The step has ended (normally or not)."""
        ...


class ProgressSink(Protocol):
    """Where tasks are shown; installed by the host with :func:`reporting_to`."""

    def open(self, description: str, total: int | None) -> ProgressTask:
        """Start showing a task of ``total`` units (``None``: unknown)."""
        ...

    def note(self, text: str) -> None:
        """Show a line that belongs to no task (e.g. "building priors")."""
        ...


class _LoggedTask:
    def __init__(self, description: str) -> None:
        self.description = description

    def update(self, completed: int, status: str = "") -> None:
        """Updates are not logged (milestones are)."""

    def milestone(self, text: str) -> None:
        """Log ``text`` at INFO level."""
        log.info("%s: %s", self.description, text)

    def close(self) -> None:
        """Nothing to release."""


class LoggingSink:
    """Default sink: milestones go to the ``cgc.progress`` logger, updates nowhere."""

    def open(self, description: str, total: int | None) -> ProgressTask:
        """Return a task that logs its milestones."""
        return _LoggedTask(description)

    def note(self, text: str) -> None:
        """Log ``text`` at INFO level."""
        log.info("%s", text)


class RecordingSink:
    """A sink that keeps every report as a tuple in :attr:`events` (tests, notebooks).

    Events: ``("open", description, total)``, ``("update", description, completed)``,
    ``("milestone", description, text)``, ``("close", description)``, ``("note", text)``.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self._current = ""

    def open(self, description: str, total: int | None) -> ProgressTask:
        """Record the task and return this sink as its handle."""
        self.events.append(("open", description, str(total)))
        self._current = description
        return self

    def update(self, completed: int, status: str = "") -> None:
        """Record the completed count."""
        self.events.append(("update", self._current, str(completed)))

    def milestone(self, text: str) -> None:
        """Record the milestone."""
        self.events.append(("milestone", self._current, text))

    def close(self) -> None:
        """Record the end of the task."""
        self.events.append(("close", self._current))

    def note(self, text: str) -> None:
        """Record the note."""
        self.events.append(("note", text))


_DEFAULT = LoggingSink()
_SINK: ContextVar[ProgressSink] = ContextVar("cgc_progress_sink", default=_DEFAULT)


def current_sink() -> ProgressSink:
    """The sink tasks are reported to in this context."""
    return _SINK.get()


def is_hosted() -> bool:
    """Whether a host installed a sink (else reports only reach the ``cgc.progress`` logger)."""
    return _SINK.get() is not _DEFAULT


def note(text: str) -> None:
    """Report a line that belongs to no task to the current sink."""
    _SINK.get().note(text)


@contextlib.contextmanager
def reporting_to(sink: ProgressSink) -> Iterator[ProgressSink]:
    """Report every :func:`task` opened inside the block to ``sink``."""
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)


@contextlib.contextmanager
def task(description: str, total: int | None = None) -> Iterator[ProgressTask]:
    """Open a task on the current sink for the duration of the block.

    Parameters
    ----------
    description
        What is being done, e.g. ``"pre-training"``.
    total
        Units of work (steps, texts); ``None`` when unknown.

    """
    t = current_sink().open(description, total)
    try:
        yield t
    finally:
        t.close()
