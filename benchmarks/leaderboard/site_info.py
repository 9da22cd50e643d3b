"""What the site says about each dataset (its card) and each method (library, version, paper)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from benchmarks.leaderboard.definitions import method_card


def _is_url(text: str) -> bool:
    return text.startswith(("https://", "http://"))


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset card, as the site shows it."""

    name: str
    title: str
    description: str
    citation: str
    license: str
    link: str
    source: str
    version: str
    found: bool = True

    def view(self) -> dict[str, Any]:
        """Template fields."""
        return {
            **self.__dict__,
            "citation_url": self.citation if _is_url(self.citation) else "",
            "link_url": self.link if _is_url(self.link) else "",
        }


def dataset_info(name: str) -> DatasetInfo:
    """The card of dataset ``name`` from the registered card folders (never from a record's path)."""
    from benchmarks.data.cards import get_card

    try:
        card = get_card(name)
    except Exception as exc:  # an unknown or unreadable card is shown as such, not fatal
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return DatasetInfo(name, name, f"no dataset card found ({msg})", "", "", "", "", "", found=False)
    urls = [u for f in card.files for u in f.urls]
    link = card.citation if _is_url(card.citation) else (urls[0] if urls else "")
    return DatasetInfo(
        name=card.name,
        title=card.title,
        description=" ".join(card.description.split()),
        citation=card.citation,
        license=card.license,
        link=urls[0] if urls else link,
        source=card.source,
        version=card.version,
    )


@dataclass(frozen=True)
class MethodInfo:
    """A method (model name) with the library versions its records ran with."""

    name: str
    library: str
    versions: str
    paper: str
    url: str
    repository: str
    is_control: bool

    def view(self) -> dict[str, Any]:
        """Template fields."""
        return dict(self.__dict__)


def method_infos(records: Iterable[Mapping[str, Any]]) -> list[MethodInfo]:
    """One entry per model name in ``records`` (variants share their base model's entry)."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_name.setdefault(str(r["model"].get("name") or r["model"]["label"]), []).append(r)
    out = []
    for name, recs in sorted(by_name.items()):
        card = method_card(name)
        packages = card.packages if card else ()
        versions: dict[str, set[str]] = {}
        for r in recs:
            installed = ((r.get("provenance") or {}).get("packages")) or {}
            for pkg in packages:
                if installed.get(pkg):
                    versions.setdefault(pkg, set()).add(str(installed[pkg]))
        text = ", ".join(f"{p} {' | '.join(sorted(v))}" for p, v in versions.items()) or "—"
        for param in card.shown_params if card else ():
            used = sorted(
                {str((r["model"].get("params") or {}).get(param)) for r in recs if r["status"] == "FINISHED"}
            )
            if used:
                text += f"; {param}: {' | '.join(used)}"
        out.append(
            MethodInfo(
                name=name,
                library=card.library
                if card
                else "no method card (not in benchmarks/leaderboard/definitions.py)",
                versions=text,
                paper=card.paper if card else "",
                url=card.url if card else "",
                repository=card.repository if card else "",
                is_control=bool(recs[0]["model"].get("is_control")),
            )
        )
    return out
