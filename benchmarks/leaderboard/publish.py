"""Clean provenance for a published leaderboard: one commit, no uncommitted changes.

``cgcbench leaderboard build --publish`` calls :func:`require_clean` before anything is written:
records made from a dirty working tree (``provenance.git.dirty``), without a known commit, or
from more than one commit are refused (exit 2, naming a record file) unless ``--allow-mixed``
is given, in which case :attr:`ProvenanceCheck.banner` says so on every page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.errors import InputError
from benchmarks.leaderboard.load import LoadedRecord


@dataclass
class ProvenanceCheck:
    """Where the records of a build were made."""

    n_records: int
    commits: dict[str, list[str]] = field(default_factory=dict)
    """Commit → origins (record files or MLflow runs) of its records."""
    dirty: list[str] = field(default_factory=list)
    """Origins of records made from a working tree with uncommitted changes."""
    unknown: list[str] = field(default_factory=list)
    """Origins of records without a git commit."""
    allow_mixed: bool = False

    @property
    def clean(self) -> bool:
        """One known commit, nothing dirty."""
        return len(self.commits) == 1 and not self.dirty and not self.unknown

    @property
    def commit(self) -> str | None:
        """The single commit of a clean build."""
        return next(iter(self.commits)) if self.clean else None

    def problems(self) -> list[str]:
        """What makes the build unclean, each naming a record."""
        out = []
        if self.dirty:
            out.append(
                f"{len(self.dirty)} of {self.n_records} records were made from a working tree with "
                f"uncommitted changes (git dirty), e.g. {self.dirty[0]}"
            )
        if self.unknown:
            out.append(f"{len(self.unknown)} records carry no git commit, e.g. {self.unknown[0]}")
        if len(self.commits) > 1:
            parts = [
                f"{c[:12]} ({len(o)} records, e.g. {o[0]})"
                for c, o in sorted(self.commits.items(), key=lambda kv: -len(kv[1]))
            ]
            out.append(f"records come from {len(self.commits)} commits: " + "; ".join(parts))
        return out

    @property
    def banner(self) -> str:
        """One sentence for the site's banner and the README."""
        if self.clean:
            return f"All {self.n_records} records were made from one clean commit, {self.commit}."
        text = "Mixed provenance: " + "; ".join(self.problems_short())
        if self.allow_mixed:
            text += ". Published anyway with --allow-mixed: compare rows of different commits with care."
        else:
            text += (
                ". A local build, not a publishable one (cgcbench leaderboard build --publish refuses it)."
            )
        return text

    def problems_short(self) -> list[str]:
        """:meth:`problems` without the example file names."""
        out = []
        if self.dirty:
            out.append(
                f"{len(self.dirty)} of {self.n_records} records made from a working tree "
                "with uncommitted changes"
            )
        if self.unknown:
            out.append(f"{len(self.unknown)} records without a git commit")
        if len(self.commits) > 1:
            counts = ", ".join(
                f"{c[:12]} ×{len(o)}" for c, o in sorted(self.commits.items(), key=lambda kv: -len(kv[1]))
            )
            out.append(f"records from {len(self.commits)} commits ({counts})")
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "clean": self.clean,
            "commit": self.commit,
            "commits": {c: len(o) for c, o in self.commits.items()},
            "n_dirty": len(self.dirty),
            "n_without_commit": len(self.unknown),
            "allow_mixed": self.allow_mixed,
            "banner": self.banner,
        }


def check_provenance(records: Sequence[LoadedRecord], allow_mixed: bool = False) -> ProvenanceCheck:
    """Collect the commits and dirty flags of ``records``."""
    check = ProvenanceCheck(len(records), allow_mixed=allow_mixed)
    for rec in sorted(records, key=lambda r: r.origin or r.record_id):
        origin = rec.origin or f"record {rec.record_id}"
        git = (rec.data.get("provenance") or {}).get("git") or {}
        commit = str(git.get("commit") or "")
        if not commit or commit == "unknown":
            check.unknown.append(origin)
        else:
            check.commits.setdefault(commit, []).append(origin)
        if git.get("dirty") or commit.endswith("+dirty"):
            check.dirty.append(origin)
    return check


def require_clean(check: ProvenanceCheck) -> None:
    """Refuse to publish records of mixed provenance unless ``allow_mixed``.

    Raises
    ------
    InputError
        Naming a dirty record file (or one per extra commit) and the two ways out.

    """
    if check.clean or check.allow_mixed:
        return
    raise InputError(
        "--publish: " + "; ".join(check.problems()) + ". Re-run the records from one clean commit "
        "(git status clean, then cgcbench run …), or pass --allow-mixed to publish them with a "
        "banner saying so."
    )
