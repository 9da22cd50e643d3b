"""What kind of values an expression matrix holds, and the sound conversions between kinds.

Kinds
-----
``counts``
    raw integer counts (UMIs or reads).
``log1p_normalized``
    ``ln(1 + x)`` of per-cell normalised counts (scanpy ``normalize_total`` + ``log1p``).
``log2_normalized``
    ``log2(1 + x)`` of normalised values (RNA-seq pipelines, RMA-style microarray values).
``linear_normalized``
    normalised values on a linear scale that are not integers: TPM, FPKM/RPKM, CPM, CP10k.
``scaled``
    centred or scaled values (z-scores, ``scanpy.pp.scale``, log-ratios): negative values.

Detection (:func:`detect_expression_kind`), in this order, on the values of the matrix:

1. any negative value → ``scaled`` when at least 5 % of the stored values are negative (centred
   data are about half negative); a handful of negative values is an input error instead;
2. every value an integer → ``counts``;
3. otherwise, for up to 300 cells, each back-transform of the cell's non-zero values —
   identity, and when no value exceeds 50 also ``expm1`` and ``2**v - 1`` — is divided by the
   cell's smallest value; when for
   at least 90 % of the values this ratio is an integer (± 0.02) the values are normalised
   counts, and the back-transform that makes them so names the kind (``linear_normalized``,
   ``log1p_normalized``, ``log2_normalized``);
4. otherwise by range: a maximum above 50 → ``linear_normalized`` (logged expression never
   exceeds ~25: ``log2(1e7) ≈ 23``); above ``log1p(1e6) ≈ 13.8`` → ``log2_normalized``;
   else ``log1p_normalized`` (scanpy's convention; this last guess is stated as such).

Conversions (:func:`convert`) are the sound ones only: ``counts`` → ``log1p_normalized``
(``normalize_total`` to 10,000 + ``log1p``), ``linear_normalized`` → ``log1p_normalized``
(``log1p``), ``log2_normalized`` → ``log1p_normalized`` (multiply by ``ln 2``: ``ln 2 ·
log2(1 + x) = ln(1 + x)``, exactly the log1p of the same values). Nothing converts to
``counts`` and nothing converts from ``scaled``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp

from benchmarks.errors import InputError

KINDS: dict[str, str] = {
    "counts": "raw integer counts",
    "log1p_normalized": "log1p of normalised counts",
    "log2_normalized": "log2 values (log2(1 + x))",
    "linear_normalized": "TPM-like linear values (TPM/FPKM/CPM)",
    "scaled": "scaled / z-scored values",
}
"""Every expression kind with the words printed to the user."""

ALIASES: dict[str, str] = {
    "raw": "counts",
    "log1p": "log1p_normalized",
    "lognorm": "log1p_normalized",
    "log2": "log2_normalized",
    "tpm": "linear_normalized",
    "fpkm": "linear_normalized",
    "rpkm": "linear_normalized",
    "cpm": "linear_normalized",
    "linear": "linear_normalized",
    "zscore": "scaled",
    "z-score": "scaled",
}
"""Other names a user may type for a kind (``--expression-kind tpm``)."""

LOG1P = "log1p_normalized"
SCALED_MIN_NEGATIVE = 0.05
INTEGER_SHARE = 0.9
LINEAR_MAX = 50.0
LOG1P_MAX = float(np.log1p(1e6))


def normalize_kind(value: str, flag: str = "--expression-kind") -> str:
    """Return the canonical kind for ``value`` (a kind or an alias such as ``tpm``).

    Raises
    ------
    InputError
        If ``value`` names no kind (the message lists the valid values).

    """
    key = value.strip().lower()
    if key in KINDS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    raise InputError(
        f"{flag} {value!r} is not an expression kind; use one of {', '.join(KINDS)} "
        f"(aliases: {', '.join(sorted(ALIASES))})"
    )


@dataclass(frozen=True)
class Detection:
    """The detected kind of a matrix and the rule that decided it."""

    kind: str
    rule: str

    @property
    def description(self) -> str:
        """Words for the kind (``"TPM-like linear values (TPM/FPKM/CPM)"``)."""
        return KINDS[self.kind]


def _values(X: sp.spmatrix | np.ndarray) -> np.ndarray:
    return X.data if sp.issparse(X) else np.asarray(X).ravel()


def _integer_share(X: sp.csr_matrix, inverse: str, max_cells: int = 300) -> float:
    """Share of non-zero values that are integer multiples of their cell's smallest value."""
    n = X.shape[0]
    rows = np.linspace(0, n - 1, min(n, max_cells)).astype(int) if n else np.zeros(0, int)
    hits = total = 0
    for r in rows:
        v = X.data[X.indptr[r] : X.indptr[r + 1]].astype(np.float64)
        v = v[v > 0]
        if inverse == "expm1":
            v = np.expm1(v)
        elif inverse == "exp2m1":
            v = np.exp2(v) - 1.0
        v = v[np.isfinite(v) & (v > 0)]
        if len(v) < 2:
            continue
        q = v / v.min()
        hits += int(np.sum(np.abs(q - np.round(q)) < 0.02))
        total += len(q)
    return hits / total if total else 0.0


def detect_expression_kind(X: sp.spmatrix | np.ndarray, where: str = "X") -> Detection:
    """Detect the kind of values in ``X`` by the rules of the module docstring.

    Parameters
    ----------
    X
        ``(n_cells, n_genes)`` matrix without NaN or infinite values.
    where
        The file and matrix, for the error message.

    Raises
    ------
    InputError
        If a few values are negative (neither expression nor centred data).

    """
    data = _values(X)
    if data.size == 0:
        return Detection("counts", "the matrix has no non-zero values")
    n_neg = int(np.sum(data < 0))
    if n_neg:
        share = n_neg / data.size
        if share >= SCALED_MIN_NEGATIVE:
            return Detection("scaled", f"{share:.0%} of the values are negative (centred or scaled data)")
        raise InputError(
            f"{where}: {n_neg} negative values ({share:.2%}) — too few for centred data, "
            "impossible for expression; fix those values, or pass --expression-kind scaled if "
            "the matrix really holds centred/scaled values"
        )
    if np.all(np.equal(np.mod(data, 1), 0)):
        return Detection("counts", "every value is a non-negative integer")
    csr = sp.csr_matrix(X)
    vmax = float(data.max())
    shares = {"linear_normalized": _integer_share(csr, "identity")}
    if vmax <= LINEAR_MAX:  # larger values are not logs (and would overflow when exponentiated)
        shares["log1p_normalized"] = _integer_share(csr, "expm1")
        shares["log2_normalized"] = _integer_share(csr, "exp2m1")
    best = max(shares, key=lambda k: shares[k])
    if shares[best] >= INTEGER_SHARE:
        inverse = {"linear_normalized": "the values", "log1p_normalized": "expm1(values)",
                   "log2_normalized": "2**values - 1"}[best]
        return Detection(
            best,
            f"{inverse} are integer multiples of each cell's smallest value for "
            f"{shares[best]:.0%} of entries (normalised counts)",
        )
    if vmax > LINEAR_MAX:
        return Detection(
            "linear_normalized",
            f"non-integer values up to {vmax:.4g} (logged expression stays below {LINEAR_MAX:g})",
        )
    if vmax > LOG1P_MAX:
        return Detection(
            "log2_normalized",
            f"non-integer values up to {vmax:.3g}, above log1p(1e6) = {LOG1P_MAX:.1f} but below "
            f"{LINEAR_MAX:g}: log2 scale",
        )
    return Detection(
        "log1p_normalized",
        f"non-integer values up to {vmax:.3g}; assumed natural-log log1p (scanpy's convention) — "
        "pass --expression-kind log2_normalized if they are log2",
    )


def conversion_to(source: str, accepted: Iterable[str]) -> str | None:
    """The kind ``source`` data would be converted to for a model accepting ``accepted``.

    Returns ``source`` itself when accepted, :data:`LOG1P` when the model accepts it and a
    sound conversion exists, else ``None``.
    """
    accepted = set(accepted)
    if source in accepted:
        return source
    if LOG1P in accepted and source in ("counts", "linear_normalized", "log2_normalized"):
        return LOG1P
    return None


def conversion_method(source: str, target: str) -> str:
    """How :func:`convert` turns ``source`` into ``target`` (words for records and messages)."""
    if source == target:
        return "none"
    return {
        "counts": "normalize_total(1e4) + log1p",
        "linear_normalized": "log1p",
        "log2_normalized": "multiply by ln 2 (= log1p of the same values)",
    }[source]


def why_not_convertible(source: str, accepted: Iterable[str]) -> str:
    """The true reason data of kind ``source`` cannot be given to a model accepting ``accepted``."""
    need = " or ".join(KINDS[k] for k in sorted(accepted) if k in KINDS) or "none"
    if source == "scaled":
        return (
            f"the data are {KINDS['scaled']}, from which expression cannot be recovered; the model "
            f"needs {need} — pass the unscaled matrix (e.g. --layer NAME or .raw)"
        )
    if "counts" in set(accepted):
        return (
            f"the data are {KINDS[source]}; the model needs {need}, and raw counts cannot be "
            "recovered from normalised values — pass the count matrix (e.g. --layer counts)"
        )
    return f"the data are {KINDS[source]}; the model needs {need}"


def convert(adata: ad.AnnData, source: str, target: str) -> ad.AnnData:
    """A copy of ``adata`` with ``X`` converted from ``source`` to ``target`` (float32 CSR).

    The recorded kind in ``uns["cgcbench"]["dataset"]`` is updated to ``target``.

    Raises
    ------
    ValueError
        If the conversion is not one of the sound ones (see the module docstring).

    """
    out = adata.copy()
    if source == target:
        return out
    if target != LOG1P or source not in ("counts", "linear_normalized", "log2_normalized"):
        raise ValueError(f"no sound conversion from {source!r} to {target!r}")
    X = sp.csr_matrix(out.X, dtype=np.float64)
    if source == "counts":
        totals = np.asarray(X.sum(axis=1)).ravel()
        scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
        X = sp.diags(scale) @ X
        X.data = np.log1p(X.data)
    elif source == "linear_normalized":
        X.data = np.log1p(X.data)
    else:
        X.data = X.data * np.log(2.0)
    out.X = sp.csr_matrix(X, dtype=np.float32)
    meta = out.uns.get("cgcbench")
    if isinstance(meta, dict) and isinstance(meta.get("dataset"), dict):
        meta["dataset"] = {**meta["dataset"], "expression_kind": target}
    return out
