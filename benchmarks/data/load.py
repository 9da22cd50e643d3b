"""Load a data set (a card or a user's h5ad) into a validated, standardised AnnData.

The AnnData every suite and adapter receives has:

* ``X`` — the card's declared expression matrix (``X``, ``raw.X`` or a layer), float32 CSR;
* ``var_names`` — unique gene ids of the card's ``gene_id_type``; ``var["gene_symbol"]`` and
  ``var["ensembl_id"]`` when the data set has them;
* ``obs`` — as in the file;
* ``uns["cgcbench"]`` — the data set's provenance (name, version, sha256, expression kind, …).

Validation stops bad input with one line naming the file, the field and the fix.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from benchmarks.data.cards import AnnDataSpec, DatasetCard, FileSpec, get_card
from benchmarks.data.fetch import resolve, sha256_file
from benchmarks.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserKeys:
    """obs keys and settings given on the command line; they override a card's."""

    label_key: str | None = None
    batch_key: str | None = None
    condition_key: str | None = None
    organism: str | None = None
    expression_kind: str | None = None


def _read_h5ad(path: Path) -> ad.AnnData:
    if not path.exists():
        raise InputError(f"{path}: no such file; pass the path of an existing .h5ad file")
    if path.is_dir() or path.suffix != ".h5ad":
        raise InputError(
            f"{path}: not an .h5ad file; convert your data with anndata "
            "(adata.write_h5ad('data.h5ad')) and pass that file"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ad.read_h5ad(path)
    except Exception as exc:  # h5py raises OSError/KeyError variants for broken files
        raise InputError(
            f"{path}: cannot be read as h5ad ({type(exc).__name__}: {exc}); re-write it with "
            "anndata.AnnData.write_h5ad"
        ) from exc


def _expression_matrix(adata: ad.AnnData, spec: AnnDataSpec, path: Path) -> ad.AnnData:
    where = spec.expression
    if where == "X":
        out = adata
    elif where == "raw.X":
        if adata.raw is None:
            raise InputError(f"{path}: card says expression='raw.X' but the file has no .raw")
        out = adata.raw.to_adata()
        out.obs = adata.obs.copy()
    elif where.startswith("layers/"):
        layer = where.split("/", 1)[1]
        if layer not in adata.layers:
            raise InputError(
                f"{path}: no layer {layer!r} (layers: {', '.join(adata.layers) or 'none'}); fix "
                "anndata.expression in the card"
            )
        out = ad.AnnData(adata.layers[layer], obs=adata.obs.copy(), var=adata.var.copy())
    else:
        raise InputError(f"{path}: anndata.expression={where!r}; use X, raw.X or layers/NAME")
    X = out.X
    X = sp.csr_matrix(X, dtype=np.float32) if not sp.issparse(X) else X.tocsr().astype(np.float32)
    return ad.AnnData(X=X, obs=out.obs.copy(), var=out.var.copy())


def detect_expression_kind(X: sp.csr_matrix) -> str:
    """Guess the value type: ``counts`` if all values are integers, else ``log1p_normalized``.

    Negative values are never guessed to be intended: :func:`validate_matrix` rejects them
    unless the user declares ``--expression-kind scaled``.
    """
    data = X.data
    if np.all(np.equal(np.mod(data, 1), 0)):
        return "counts"
    return "log1p_normalized"


def validate_matrix(X: sp.csr_matrix, kind: str, path: Path | str) -> None:
    """Reject NaN/inf, negative values (unless scaled) and non-integer counts."""
    data = X.data
    n_nan = int(np.isnan(data).sum())
    if n_nan:
        raise InputError(
            f"{path}: expression matrix has {n_nan} NaN values; impute or drop them before running"
        )
    n_inf = int(np.isinf(data).sum())
    if n_inf:
        raise InputError(f"{path}: expression matrix has {n_inf} infinite values; remove them")
    if kind != "scaled" and data.size and data.min() < 0:
        raise InputError(
            f"{path}: expression matrix has {int((data < 0).sum())} negative values but is declared "
            f"{kind!r}; pass raw counts or log-normalised values (not scaled/centred data)"
        )
    if kind == "counts" and data.size and not np.all(np.equal(np.mod(data, 1), 0)):
        raise InputError(
            f"{path}: expression is declared 'counts' but holds non-integer values; pass raw UMI "
            "counts or set --expression-kind log1p_normalized"
        )


def _check_obs_key(adata: ad.AnnData, key: str | None, what: str, flag: str, path: Path) -> None:
    if key is None:
        return
    if key not in adata.obs.columns:
        cols = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        raise InputError(
            f"{path}: obs has no column {key!r} ({what}); available obs columns: {cols}; pass "
            f"{flag} with one of them"
        )
    if adata.obs[key].isna().any():
        n = int(adata.obs[key].isna().sum())
        raise InputError(f"{path}: obs[{key!r}] ({what}) has {n} missing values; fill or drop them")


def _standardise_var(adata: ad.AnnData, card: DatasetCard, spec: AnnDataSpec, path: Path) -> None:
    var = adata.var
    if spec.symbol_column and spec.symbol_column not in var.columns:
        raise InputError(f"{path}: var has no column {spec.symbol_column!r} (card symbol_column)")
    if spec.ensembl_column and spec.ensembl_column not in var.columns:
        raise InputError(f"{path}: var has no column {spec.ensembl_column!r} (card ensembl_column)")
    names = adata.var_names.astype(str)
    if card.gene_id_type == "symbol":
        var["gene_symbol"] = names
    elif spec.symbol_column:
        var["gene_symbol"] = var[spec.symbol_column].astype(str).values
    if card.gene_id_type == "ensembl":
        var["ensembl_id"] = names
    elif spec.ensembl_column:
        var["ensembl_id"] = var[spec.ensembl_column].astype(str).values
    looks_ensembl = float(np.mean([n.startswith(("ENSG", "ENSMUSG", "ENS")) for n in names]))
    if card.gene_id_type == "ensembl" and looks_ensembl < 0.5:
        raise InputError(
            f"{path}: dataset {card.name} declares Ensembl gene ids but only {looks_ensembl:.0%} of "
            f"var_names look like Ensembl ids (e.g. {', '.join(names[:3])}); fix gene_id_type in the "
            "card or put the Ensembl ids in var_names"
        )
    if card.gene_id_type == "symbol" and looks_ensembl > 0.5:
        raise InputError(
            f"{path}: dataset {card.name} declares gene symbols but {looks_ensembl:.0%} of var_names "
            f"are Ensembl ids (e.g. {', '.join(names[:3])}); fix gene_id_type in the card"
        )
    dup = names[names.duplicated()]
    if len(dup):
        examples = ", ".join(sorted(set(dup))[:5])
        raise InputError(
            f"{path}: var_names has {len(dup)} duplicated gene names (e.g. {examples}); make them "
            "unique (adata.var_names_make_unique()) or aggregate duplicated genes first"
        )


def load_anndata(card: DatasetCard, *, keys: UserKeys | None = None, path: Path | None = None) -> ad.AnnData:
    """Read, validate and standardise the AnnData of ``card``.

    Parameters
    ----------
    card
        A dataset card with an ``[anndata]`` section.
    keys
        Command-line overrides for obs keys, organism and expression kind.
    path
        The h5ad path; resolved from the card's first file if not given.

    """
    keys = keys or UserKeys()
    if card.anndata is None:
        raise InputError(f"dataset {card.name} is not an AnnData set (kind={card.kind})")
    if path is None and card.kind == "simulated":
        from benchmarks.simulate import materialize  # SERGIO; cached by simulation parameters

        path = materialize(card)
    if path is None:
        path = resolve(card)[card.primary_file.name]
    spec = card.anndata
    spec = replace(
        spec,
        label_key=keys.label_key or spec.label_key,
        batch_key=keys.batch_key or spec.batch_key,
        condition_key=keys.condition_key or spec.condition_key,
        expression_kind=keys.expression_kind or spec.expression_kind,
    )
    raw = _read_h5ad(path)
    adata = _expression_matrix(raw, spec, path)
    nan_dropped = 0
    if card.extra.get("nan_policy") == "drop_genes":
        X = adata.X
        cols = np.unique(X.indices[np.isnan(X.data)])
        if len(cols):
            adata = adata[:, np.setdiff1d(np.arange(adata.n_vars), cols)].copy()
            nan_dropped = len(cols)
            log.warning(
                "%s: dropped %d genes holding NaN values (card nan_policy=drop_genes)", path, nan_dropped
            )
    elif card.extra.get("nan_policy") not in (None, "error"):
        raise InputError(f"{card.path}: nan_policy={card.extra['nan_policy']!r}; use 'error' or 'drop_genes'")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(f"{path}: the data set is empty ({adata.n_obs} cells × {adata.n_vars} genes)")
    validate_matrix(adata.X, spec.expression_kind, path)
    _check_obs_key(adata, spec.label_key, "label key", "--label-key", path)
    _check_obs_key(adata, spec.batch_key, "batch key", "--batch-key", path)
    _check_obs_key(adata, spec.condition_key, "condition key", "--condition-key", path)
    _check_obs_key(adata, spec.split_key, "split key", "the card's split_key", path)
    _standardise_var(adata, card, spec, path)
    prov: dict[str, Any] = card.provenance() | {
        "organism": keys.organism or card.organism,
        "expression_kind": spec.expression_kind,
        "path": str(path),
        **({"sha256": {path.name: sha256_file(path)}} if card.kind == "simulated" else {}),
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
    }
    adata.uns["cgcbench"] = {
        "dataset": prov,
        "label_key": spec.label_key,
        "batch_key": spec.batch_key,
        "condition_key": spec.condition_key,
        "split_key": spec.split_key,
        "nan_genes_dropped": nan_dropped,
        "grn": _true_grn(raw),
        "reference_values": list(spec.reference_values),
        "query_values": list(spec.query_values),
    }
    return adata


def _true_grn(raw: ad.AnnData) -> dict[str, list[str]] | None:
    """The ground-truth network a simulated file carries (``uns["grn"]``: ``reg``/``tar``)."""
    grn = raw.uns.get("grn")
    if not isinstance(grn, dict) or "reg" not in grn or "tar" not in grn:
        return None
    return {"regulator": [str(g) for g in grn["reg"]], "target": [str(g) for g in grn["tar"]]}


def card_for_user_file(path: Path, keys: UserKeys) -> DatasetCard:
    """An ad-hoc card for a user's h5ad file (version = the file's sha256 prefix)."""
    path = path.expanduser().resolve()
    adata = _read_h5ad(path)
    X = adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    kind = keys.expression_kind or detect_expression_kind(X)
    names = adata.var_names.astype(str)
    id_type = "ensembl" if np.mean([n.startswith(("ENSG", "ENSMUSG")) for n in names]) > 0.5 else "symbol"
    digest = sha256_file(path)
    return DatasetCard(
        name=path.stem,
        version=digest[:12],
        title=f"user file {path.name}",
        organism=keys.organism or "human",
        gene_id_type=id_type,
        license="user-supplied",
        kind="scrna",
        files=(FileSpec(name=path.name, sha256=digest, mirror_path=str(path)),),
        source=str(path),
        anndata=AnnDataSpec(
            expression="X",
            expression_kind=kind,
            label_key=keys.label_key,
            batch_key=keys.batch_key,
            condition_key=keys.condition_key,
        ),
        path=None,
    )


def is_user_file(name: str) -> bool:
    """Whether a ``--datasets`` entry is a file path rather than a card name."""
    return name.endswith(".h5ad") or "/" in name or name.startswith((".", "~"))


def load_dataset(name: str, keys: UserKeys | None = None) -> tuple[DatasetCard, ad.AnnData]:
    """Resolve a card name or a user h5ad path and load it."""
    keys = keys or UserKeys()
    if is_user_file(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise InputError(f"{path}: no such file; pass the path of an existing .h5ad file")
        card = card_for_user_file(path, keys)
        return card, load_anndata(card, keys=keys, path=path.resolve())
    card = get_card(name)
    return card, load_anndata(card, keys=keys)
