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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from benchmarks.data.cards import AnnDataSpec, DatasetCard, FileSpec, get_card
from benchmarks.data.expression import Detection, detect_expression_kind, normalize_kind
from benchmarks.data.fetch import resolve, sha256_file
from benchmarks.data.identifiers import classify_ids, find_symbol_column, looks_transposed, validate_organism
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
    layer: str | None = None
    """Which matrix holds expression: ``X``, ``raw`` (``.raw.X``) or a layer name (``--layer``)."""
    gene_symbols_key: str | None = None
    """A ``var`` column with gene symbols (scanpy's ``gene_symbols``; ``--gene-symbols-key``)."""

    def validated(self) -> UserKeys:
        """A copy with ``expression_kind`` and ``organism`` checked and canonical.

        Raises
        ------
        InputError
            If either names no known value (the message lists the valid ones).

        """
        return replace(
            self,
            expression_kind=normalize_kind(self.expression_kind) if self.expression_kind else None,
            organism=validate_organism(self.organism) if self.organism else None,
        )


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


def expression_location(layer: str | None, default: str = "X") -> str:
    """Where ``--layer`` points: ``X``, ``raw.X`` (``raw``/``.raw``) or ``layers/NAME``."""
    if layer is None:
        return default
    if layer in ("X", ".X"):
        return "X"
    if layer in ("raw", ".raw", "raw.X", ".raw.X"):
        return "raw.X"
    return layer if layer.startswith("layers/") else f"layers/{layer}"


def _expression_matrix(
    adata: ad.AnnData, where: str, path: Path, flag: str = "the card's anndata.expression"
) -> ad.AnnData:
    if where == "X":
        out = adata
    elif where == "raw.X":
        if adata.raw is None:
            raise InputError(f"{path}: {flag} selects .raw but the file has no .raw; use X or a layer")
        out = adata.raw.to_adata()
        out.obs = adata.obs.copy()
    elif where.startswith("layers/"):
        layer = where.split("/", 1)[1]
        if layer not in adata.layers:
            raise InputError(
                f"{path}: no layer {layer!r} (layers: {', '.join(adata.layers) or 'none'}); fix {flag} "
                "(X, raw or a layer name)"
            )
        out = ad.AnnData(adata.layers[layer], obs=adata.obs.copy(), var=adata.var.copy())
    else:
        raise InputError(f"{path}: {flag}={where!r}; use X, raw.X or layers/NAME")
    X = out.X
    from benchmarks.validate import check_matrix_dtype

    check_matrix_dtype(X, f"{path} ({where})")  # object/string/complex: a clear error, not a cast
    X = sp.csr_matrix(X, dtype=np.float32) if not sp.issparse(X) else X.tocsr().astype(np.float32)
    # cell embeddings the file carries (``obsm``) stay with their cells: ``--embedding-key`` scores them
    obsm = {k: v for k, v in adata.obsm.items() if getattr(v, "shape", (0,))[0] == adata.n_obs}
    return ad.AnnData(X=X, obs=out.obs.copy(), var=out.var.copy(), obsm=obsm)


def _check_finite(X: sp.csr_matrix, path: Path | str) -> None:
    n_nan = int(np.isnan(X.data).sum())
    if n_nan:
        raise InputError(
            f"{path}: expression matrix has {n_nan} NaN values; impute or drop them before running"
        )
    n_inf = int(np.isinf(X.data).sum())
    if n_inf:
        raise InputError(f"{path}: expression matrix has {n_inf} infinite values; remove them")


def validate_matrix(X: sp.csr_matrix, kind: str, path: Path | str) -> None:
    """Reject NaN/inf, negative values (unless scaled) and non-integer counts."""
    _check_finite(X, path)
    data = X.data
    if kind != "scaled" and data.size and data.min() < 0:
        raise InputError(
            f"{path}: expression matrix has {int((data < 0).sum())} negative values but is declared "
            f"{kind!r}; pass expression values, or --expression-kind scaled for centred/z-scored data"
        )
    if kind == "counts" and data.size and not np.all(np.equal(np.mod(data, 1), 0)):
        detected = detect_expression_kind(X, str(path))
        raise InputError(
            f"{path}: expression is declared 'counts' but holds non-integer values (they look like "
            f"{detected.description}); pass raw counts (e.g. --layer counts) or set "
            f"--expression-kind {detected.kind}"
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


def _standardise_var(
    adata: ad.AnnData, card: DatasetCard, spec: AnnDataSpec, path: Path, symbols_key: str | None = None
) -> None:
    var = adata.var
    symbol_column = symbols_key or spec.symbol_column
    if symbol_column and symbol_column not in var.columns:
        flag = "--gene-symbols-key" if symbols_key else "the card's symbol_column"
        cols = ", ".join(map(str, var.columns[:20])) or "none"
        raise InputError(
            f"{path}: var has no column {symbol_column!r} ({flag}); var columns: {cols}; pass "
            "--gene-symbols-key with the column holding gene symbols"
        )
    if spec.ensembl_column and spec.ensembl_column not in var.columns:
        raise InputError(f"{path}: var has no column {spec.ensembl_column!r} (card ensembl_column)")
    names = adata.var_names.astype(str)
    if symbol_column:
        var["gene_symbol"] = var[symbol_column].astype(str).values
    elif card.gene_id_type == "symbol":
        var["gene_symbol"] = names
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


BULK_MAX_SAMPLES = 1000
BULK_MIN_DETECTED = 0.5


def detect_data_type(X: sp.csr_matrix, card_kind: str, expression_kind: str) -> tuple[str, str]:
    """``("bulk" | "single-cell" | "unknown", rule)`` of a matrix.

    A card of kind ``bulk`` is bulk. Scaled (centred) values have no zeros to count, so their
    type is ``unknown``. Otherwise the data are bulk profiles when there are at most 1,000
    samples and the median sample detects at least half of the genes (single cells detect a
    small share of the genes: ~5-35 % even on HVG subsets).
    """
    if card_kind == "bulk":
        return "bulk", "the dataset card is of kind bulk"
    if expression_kind == "scaled":
        return "unknown", "centred/scaled values: the share of detected genes cannot be measured"
    n_obs, n_vars = X.shape
    detected = np.asarray((X != 0).sum(axis=1)).ravel()
    share = float(np.median(detected) / max(n_vars, 1)) if n_obs else 0.0
    if n_obs <= BULK_MAX_SAMPLES and share >= BULK_MIN_DETECTED:
        return "bulk", f"{n_obs} samples, the median one detecting {share:.0%} of the genes"
    return "single-cell", f"{n_obs} observations, the median one detecting {share:.0%} of the genes"


_CONVERSION_PLAN = {
    "counts": "models that need log values get normalize_total(1e4) + log1p",
    "log1p_normalized": "used as is",
    "log2_normalized": "converting to natural-log log1p (× ln 2) for models that need log1p values",
    "linear_normalized": "converting with log1p for models that need log values",
    "scaled": "only models that accept scaled values can run (expression cannot be recovered)",
}


def load_anndata(
    card: DatasetCard,
    *,
    keys: UserKeys | None = None,
    path: Path | None = None,
    report: Callable[[str], None] | None = None,
) -> ad.AnnData:
    """Read, validate and standardise the AnnData of ``card``.

    Parameters
    ----------
    card
        A dataset card with an ``[anndata]`` section.
    keys
        Command-line overrides for obs keys, organism, expression kind, layer and symbol column.
    path
        The h5ad path; resolved from the card's first file if not given.
    report
        Called with one line per finding worth telling the user (detected expression kind,
        organism, symbol column, bulk data).

    """
    keys = (keys or UserKeys()).validated()
    say = report or (lambda _msg: None)
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
    )
    raw = _read_h5ad(path)
    location = expression_location(keys.layer, spec.expression)
    flag = "--layer" if keys.layer else "the card's anndata.expression"
    adata = _expression_matrix(raw, location, path, flag)
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
    _check_finite(adata.X, path)
    detection: Detection | None = None
    if keys.expression_kind:
        kind, kind_source, rule = keys.expression_kind, "user", "--expression-kind"
    elif card.extra.get("user_file") or location != spec.expression:
        detection = detect_expression_kind(adata.X, f"{path} ({location})")
        kind, kind_source, rule = detection.kind, "detected", detection.rule
    else:
        kind, kind_source, rule = spec.expression_kind, "card", f"declared by the card ({spec.expression})"
    validate_matrix(adata.X, kind, path)
    if detection is not None:
        plan = _CONVERSION_PLAN[kind]
        say(f"{card.name}: detected: {detection.description}; {plan} (rule: {detection.rule})")
    elif kind_source == "user":
        say(f"{card.name}: expression kind {kind} (--expression-kind); {_CONVERSION_PLAN[kind]}")
    _check_obs_key(adata, spec.label_key, "label key", "--label-key", path)
    _check_obs_key(adata, spec.batch_key, "batch key", "--batch-key", path)
    _check_obs_key(adata, spec.condition_key, "condition key", "--condition-key", path)
    _check_obs_key(adata, spec.split_key, "split key", "the card's split_key", path)
    symbols_key = keys.gene_symbols_key or card.extra.get("detected_symbol_column")
    _standardise_var(adata, card, spec, path, symbols_key)
    if symbols_key and not keys.gene_symbols_key:
        say(f"{card.name}: gene symbols from var[{symbols_key!r}] (choose another with --gene-symbols-key)")
    data_type, data_type_rule = detect_data_type(adata.X, card.kind, kind)
    if data_type == "bulk" and card.kind != "bulk":
        say(f"{card.name}: bulk profiles, not single cells ({data_type_rule}); recorded as data_type=bulk")
    organism = keys.organism or card.organism
    organism_source = "user" if keys.organism else card.extra.get("organism_source", "card")
    prov: dict[str, Any] = card.provenance() | {
        "organism": organism,
        "organism_source": organism_source,
        "organism_rule": card.extra.get("organism_rule", "declared by the card"),
        "gene_id_type": card.gene_id_type,
        "gene_symbols_key": symbols_key,
        "expression_kind": kind,
        "expression_kind_source": kind_source,
        "expression_kind_rule": rule,
        "expression_matrix": location,
        "data_type": data_type,
        "data_type_rule": data_type_rule,
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


def card_for_user_file(
    path: Path, keys: UserKeys, report: Callable[[str], None] | None = None
) -> DatasetCard:
    """An ad-hoc card for a user's h5ad file (version = the file's sha256 prefix).

    The gene-id type and the organism are detected from the gene identifiers
    (:mod:`benchmarks.data.identifiers`) unless ``--organism`` names it; when the ``var_names``
    are not symbols, a ``var`` column of symbols (``--gene-symbols-key``, or a well-known
    column such as ``gene_short_name``) supplies them. The expression kind is detected by
    :func:`load_anndata` on the selected matrix.
    """
    keys = keys.validated()
    say = report or (lambda _msg: None)
    path = path.expanduser().resolve()
    adata = _read_h5ad(path)
    location = expression_location(keys.layer)
    var = adata.raw.var if location == "raw.X" and adata.raw is not None else adata.var
    names = var.index.astype(str)
    if looks_transposed(adata.obs_names.astype(str), names):
        raise InputError(
            f"{path}: obs_names look like gene or probe ids (e.g. {', '.join(adata.obs_names[:3])}) and "
            "var_names do not: the matrix is transposed; write adata.T (samples as rows, genes as "
            "columns)"
        )
    ids = classify_ids(names)
    symbol_column = keys.gene_symbols_key
    extra: dict[str, Any] = {"user_file": True}
    if symbol_column is None and ids.id_type != "symbol":
        found = find_symbol_column(var)
        if found:
            extra["detected_symbol_column"] = found
            symbol_column = found
    organism_ids = ids
    if symbol_column and symbol_column in var.columns and ids.organism == "unknown":
        organism_ids = classify_ids(var[symbol_column].astype(str).tolist())
    if keys.organism:
        organism, extra["organism_source"] = keys.organism, "user"
        extra["organism_rule"] = "--organism"
    else:
        organism, extra["organism_source"] = organism_ids.organism, "detected"
        extra["organism_rule"] = organism_ids.rule
        say(f"{path.stem}: organism {organism} ({organism_ids.rule}); override with --organism")
    id_type = ids.id_type
    digest = sha256_file(path)
    return DatasetCard(
        name=path.stem,
        version=digest[:12],
        title=f"user file {path.name}",
        organism=organism,
        gene_id_type=id_type,
        license="user-supplied",
        kind="scrna",
        files=(FileSpec(name=path.name, sha256=digest, mirror_path=str(path)),),
        source=str(path),
        anndata=AnnDataSpec(
            expression=location,
            expression_kind=keys.expression_kind or "counts",
            label_key=keys.label_key,
            batch_key=keys.batch_key,
            condition_key=keys.condition_key,
        ),
        extra=extra,
        path=None,
    )


def is_user_file(name: str) -> bool:
    """Whether a ``--datasets`` entry is a file path rather than a card name."""
    return name.endswith(".h5ad") or "/" in name or name.startswith((".", "~"))


def load_dataset(
    name: str, keys: UserKeys | None = None, report: Callable[[str], None] | None = None
) -> tuple[DatasetCard, ad.AnnData]:
    """Resolve a card name or a user h5ad path and load it (``report``: see :func:`load_anndata`)."""
    keys = (keys or UserKeys()).validated()
    if is_user_file(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise InputError(f"{path}: no such file; pass the path of an existing .h5ad file")
        card = card_for_user_file(path, keys, report)
        return card, load_anndata(card, keys=keys, path=path.resolve(), report=report)
    card = get_card(name)
    return card, load_anndata(card, keys=keys, report=report)
