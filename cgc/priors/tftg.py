"""TF → target edge loaders (TRRUST, DoRothEA, CollecTRI)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from cgc.errors import InputFileError


def _read(path: str | Path, **kwargs: object) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"TF-target file {p} not found")
    try:
        return pd.read_csv(p, **kwargs)  # type: ignore[arg-type]
    except Exception as exc:  # pragma: no cover - pandas raises many types
        raise InputFileError(f"cannot read TF-target file {p}: {exc}") from exc


def _require(df: pd.DataFrame, cols: Iterable[str], path: str | Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputFileError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}"
        )


def read_trrust(path: str | Path) -> pd.DataFrame:
    """Read a TRRUST v2 raw export (``TF, target, mode, PMIDs``; no header).

    Returns
    -------
    pandas.DataFrame
        Columns ``tf`` and ``target`` (gene symbols), duplicates removed.

    """
    df = _read(path, sep="\t", header=None, dtype=str)
    if df.shape[1] < 2:
        raise InputFileError(f"{path}: expected >= 2 tab-separated columns (TF, target)")
    out = pd.DataFrame({"tf": df[0], "target": df[1]})
    return out.dropna().drop_duplicates().reset_index(drop=True)


def read_dorothea(path: str | Path, levels: Iterable[str] = ("A", "B", "C")) -> pd.DataFrame:
    """Read a DoRothEA regulon table (``tf, confidence, target, mor``) at given confidences."""
    df = _read(path, sep="\t", dtype=str)
    _require(df, ("tf", "confidence", "target"), path)
    df = df[df["confidence"].isin(set(levels))]
    return df[["tf", "target"]].dropna().drop_duplicates().reset_index(drop=True)


def read_collectri(path: str | Path) -> pd.DataFrame:
    """Read a CollecTRI export (``tf, target, sign``; CSV)."""
    df = _read(path, dtype=str)
    # OmniPath exports sometimes name the columns source/target.
    df = df.rename(columns={"source": "tf"})
    _require(df, ("tf", "target"), path)
    return df[["tf", "target"]].dropna().drop_duplicates().reset_index(drop=True)


def merge_tftg(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Union of several TF→target tables, without self-loops, sorted for determinism."""
    frames = [t[["tf", "target"]] for t in tables]
    if not frames:
        return pd.DataFrame({"tf": [], "target": []}, dtype=str)
    df = pd.concat(frames, ignore_index=True).drop_duplicates()
    df = df[df["tf"] != df["target"]]
    return df.sort_values(["tf", "target"]).reset_index(drop=True)
