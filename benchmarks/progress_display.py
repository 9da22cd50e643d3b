"""How ``cgcbench run`` shows the progress of long steps inside a cell.

Adapters and ``cgc`` report pre-training steps, fine-tuning epochs, text-vector encoding and
training epochs through :mod:`cgc.progress`. The CLI installs one of these sinks around the run
matrix:

* :class:`NestedBars` — on a terminal: one rich bar per open task, nested (indented) under the
  matrix bar, removed when the task ends; milestones printed above the bars.
* :class:`PlainLines` — stdout/stderr is a file: a line when a task starts, at every quarter of
  its total, when it ends (with the time it took), and one per milestone — a 40-minute cell
  leaves a trace in a log file without flooding it.
* :class:`Silent` — ``--quiet``.

Cells run in a separate process (``--isolate``, ``--timeout-per-run``, ``--executor dask``)
report through the default sink of :mod:`cgc.progress` (the ``cgc.progress`` logger) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cgc.progress import ProgressTask

Say = Callable[[str], None]


class _Silent:
    def update(self, completed: int, status: str = "") -> None:
        """Nothing is shown."""

    def milestone(self, text: str) -> None:
        """Nothing is shown."""

    def close(self) -> None:
        """Nothing to release."""


class Silent:
    """Show nothing (``--quiet``)."""

    def open(self, description: str, total: int | None) -> ProgressTask:
        """Return a task that shows nothing."""
        return _Silent()

    def note(self, text: str) -> None:
        """Nothing is shown."""


class _Bar:
    def __init__(self, progress: Any, description: str, total: int | None, depth: int,
                 on_close: Callable[[_Bar], None]) -> None:
        self.progress = progress
        self.on_close = on_close
        self.description = description
        indent = "  " * depth + "└ "
        self.label = f"{indent}{description}"
        self.task_id = progress.add_task(self.label, total=total)

    def update(self, completed: int, status: str = "") -> None:
        """Move the bar; the status follows the description."""
        label = f"{self.label} · {status}" if status else self.label
        self.progress.update(self.task_id, completed=completed, description=label)

    def milestone(self, text: str) -> None:
        """Print ``text`` above the bars."""
        self.progress.console.print(f"  {self.description}: {text}", markup=False, highlight=False,
                                    soft_wrap=True)

    def close(self) -> None:
        """Remove the bar (the matrix bar stays)."""
        self.progress.remove_task(self.task_id)
        self.on_close(self)


class NestedBars:
    """Rich bars nested under the matrix bar of a ``rich.progress.Progress``.

    Parameters
    ----------
    progress
        The running ``Progress`` of the matrix.

    """

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self._open: list[_Bar] = []

    def open(self, description: str, total: int | None) -> ProgressTask:
        """Add a bar one level below the innermost open one."""
        bar = _Bar(self.progress, description, total, 1 + len(self._open), self._open.remove)
        self._open.append(bar)
        return bar

    def note(self, text: str) -> None:
        """Print ``text`` above the bars."""
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)


class _Lines:
    def __init__(self, say: Say, description: str, total: int | None) -> None:
        self.say = say
        self.description = description
        self.total = total
        self.t0 = time.monotonic()
        self.next_quarter = 1
        self.completed = 0
        self.status = ""
        say(f"  {description}: started" + (f" (total {total})" if total else ""))

    def update(self, completed: int, status: str = "") -> None:
        """Print a line when a quarter of the total is passed."""
        self.completed, self.status = completed, status
        if not self.total:
            return
        while self.next_quarter <= 4 and completed * 4 >= self.next_quarter * self.total:
            if completed < self.total:  # the end is the close() line
                self.say(f"  {self.description}: {completed}/{self.total}"
                         + (f" · {status}" if status else "")
                         + f" · {time.monotonic() - self.t0:.0f} s")
            self.next_quarter += 1

    def milestone(self, text: str) -> None:
        """One line per milestone."""
        self.say(f"  {self.description}: {text}")

    def close(self) -> None:
        """The end line, with the time taken."""
        done = f"{self.completed}/{self.total}" if self.total else f"{self.completed}"
        self.say(f"  {self.description}: ended at {done}"
                 + (f" · {self.status}" if self.status else "")
                 + f" · {time.monotonic() - self.t0:.0f} s")


class PlainLines:
    """Plain log lines: start, each quarter, end and milestones of every task.

    Parameters
    ----------
    say
        Writes one line (the CLI's time-stamped printer).

    """

    def __init__(self, say: Say) -> None:
        self.say = say

    def open(self, description: str, total: int | None) -> ProgressTask:
        """Announce the task and return its line printer."""
        return _Lines(self.say, description, total)

    def note(self, text: str) -> None:
        """One line."""
        self.say(text)
