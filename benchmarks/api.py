"""The Python API: the CLI's benchmark matrix from a notebook, on files or in-memory AnnData.

>>> import cgcbench as cb
>>> df = cb.run("annotation", ["pca-logreg", "majority"], datasets=["pbmc68k_reduced"])
>>> df = cb.evaluate_embedding(adata, "X_scVI", suite="clustering", label_key="cell_type",
...                            batch_key="batch")
>>> cb.embed(adata, model="cgc")          # adata.obsm["X_cgc"] (and adata.varm["cgc_genes"])

Everything goes through the same runner as ``cgcbench run``: the same validation (bad input
raises :class:`benchmarks.errors.InputError` before any work), the same records in
``results_dir`` and the same MLflow logging. An in-memory AnnData is written once to
``results_dir/inputs/<sha256 prefix>/<name>.h5ad`` and read back through the loader a user
file takes, so its records carry a file and a sha256 like any other data set.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from benchmarks.errors import InputError

if TYPE_CHECKING:
    from anndata import AnnData

RECORD_COLUMNS = ("suite", "dataset", "model", "init", "is_control", "seed", "status")


def records_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per record: identity columns, every metric, reason/error and the record id."""
    rows = []
    for rec in records:
        model = rec.get("model") or {}
        error = rec.get("error") or {}
        row: dict[str, Any] = {
            "suite": rec.get("suite"),
            "dataset": (rec.get("dataset") or {}).get("name"),
            "model": model.get("label"),
            "init": model.get("init"),
            "is_control": bool(model.get("is_control", False)),
            "seed": rec.get("seed"),
            "status": rec.get("status"),
        }
        row |= {k: v for k, v in sorted((rec.get("metrics") or {}).items())}
        row["reason"] = rec.get("reason") or (
            f"{error.get('type')}: {str(error.get('message', '')).splitlines()[0]}" if error else None
        )
        row["record_id"] = rec.get("record_id")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=[*RECORD_COLUMNS, "reason", "record_id"])
    metrics = [c for c in frame.columns if c not in (*RECORD_COLUMNS, "reason", "record_id")]
    return frame[[*RECORD_COLUMNS, *metrics, "reason", "record_id"]]


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def write_input(adata: AnnData, name: str, directory: Path) -> Path:
    """Write an in-memory AnnData as ``directory/<sha256[:12]>/<name>.h5ad`` and return the path.

    The harness's own ``uns["cgcbench"]`` (present on an AnnData the loader returned) is left
    out: it is re-derived on loading. The file is written to a temporary name and renamed, so
    a killed write leaves no half file behind.
    """
    from benchmarks.data.fetch import sha256_file

    if not name or "/" in name or name.startswith("."):
        raise InputError(f"dataset_name {name!r}: use a plain name such as 'my_pbmc'")
    directory.mkdir(parents=True, exist_ok=True)
    out = adata.copy()
    out.uns = {k: v for k, v in out.uns.items() if k != "cgcbench"}
    fd, tmp_name = tempfile.mkstemp(suffix=".h5ad", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        out.write_h5ad(tmp)
        digest = sha256_file(tmp)
        final = directory / digest[:12] / f"{name}.h5ad"
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink()
        else:
            tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def run(
    suite: str,
    models: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
    adata: AnnData | Mapping[str, AnnData] | None = None,
    seeds: Sequence[int] = (0,),
    *,
    dataset_name: str = "adata",
    label_key: str | None = None,
    batch_key: str | None = None,
    condition_key: str | None = None,
    organism: str | None = None,
    expression_kind: str | None = None,
    layer: str | None = None,
    gene_symbols_key: str | None = None,
    embedding_key: str | None = None,
    gene_embeddings: str | os.PathLike[str] | None = None,
    suite_options: Mapping[str, Any] | None = None,
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    quick: bool = False,
    results_dir: str | os.PathLike[str] = "cgcbench-results",
    tracking_uri: str | None = None,
    offline: bool = False,
    resume: bool = False,
    isolate: bool = False,
    timeout_per_run: float | None = None,
    on_progress: Callable[[str, Any, dict[str, Any] | None], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run ``suite`` for every model × dataset × seed, as ``cgcbench run`` does.

    Parameters
    ----------
    suite
        Suite name (``annotation``, ``clustering``, ``gene-classification``, ``grn``,
        ``perturbation``, ``bulk-knockout``).
    models
        Model strings (``"cgc,pca-logreg"`` or a list; ``name:variant`` allowed). May be omitted
        with ``embedding_key`` / ``gene_embeddings``: the suite's controls run beside them.
    datasets
        Card names or ``.h5ad`` paths (default: the suite's, unless ``adata`` is given).
    adata
        An in-memory AnnData (named ``dataset_name``) or a mapping ``name -> AnnData``; each is
        validated exactly like a user file.
    seeds
        Benchmark seeds; the same seed on the same data gives the same numbers.
    dataset_name
        The name an in-memory ``adata`` is recorded under.
    label_key, batch_key, condition_key, organism, expression_kind, layer, gene_symbols_key
        As the CLI flags of the same names.
    embedding_key
        Score ``adata.obsm[embedding_key]`` as model ``obsm:<key>``.
    gene_embeddings
        A ``.parquet``/``.csv`` gene embedding table, scored as model ``genes:<file stem>``.
    suite_options, model_params
        ``--set`` options and per-model settings (``{"pca-logreg": {"n_pcs": 30}}``).
    quick, results_dir, tracking_uri, offline, resume, isolate, timeout_per_run
        As the CLI options of the same names.
    on_progress, on_notice
        Callbacks of :class:`benchmarks.runner.MatrixRunner`.

    Returns
    -------
    pandas.DataFrame
        One row per cell: suite, dataset, model, init, is_control, seed, status, every metric,
        reason (why ``NOT_APPLICABLE`` / the first line of a failure) and record_id.

    Raises
    ------
    benchmarks.errors.CgcbenchError
        On bad input, before any model trains or anything is written.

    """
    from benchmarks.data.load import UserKeys
    from benchmarks.registry import suite_class
    from benchmarks.runner import MatrixRunner, RunRequest

    results = Path(results_dir)
    names = _as_list(datasets)
    if adata is not None:
        items = adata.items() if isinstance(adata, Mapping) else [(dataset_name, adata)]
        for name, obj in items:
            names.append(str(write_input(obj, str(name), results / "inputs")))
    model_list = expand_models(suite, _as_list(models), embedding_key, gene_embeddings)
    params = {k: dict(v) for k, v in (model_params or {}).items()}
    if gene_embeddings is not None:
        params.setdefault("genes", {})["path"] = str(Path(gene_embeddings).expanduser().resolve())
    request = RunRequest(
        suite=suite_class(suite).name,
        models=model_list,
        datasets=names,
        seeds=[int(s) for s in seeds],
        keys=UserKeys(label_key, batch_key, condition_key, organism, expression_kind, layer, gene_symbols_key)
        .validated(),
        quick=quick,
        results_dir=results,
        tracking_uri=tracking_uri,
        suite_options=dict(suite_options or {}),
        model_params=params,
        resume=resume,
        timeout_per_run=timeout_per_run,
        isolate=isolate,
        offline=offline,
    )
    records = MatrixRunner(request, on_progress, on_notice).run()
    return records_frame(records)


def expand_models(
    suite: str,
    models: Sequence[str],
    embedding_key: str | None = None,
    gene_embeddings: str | os.PathLike[str] | None = None,
) -> list[str]:
    """The model list with a user's own embedding added (and the suite's controls when alone).

    ``embedding_key`` adds ``obsm:<key>`` (cell suites), ``gene_embeddings`` adds
    ``genes:<file stem>`` (gene suites). When no other model is named, the suite's controls
    run beside it so that the numbers have their bounds.
    """
    from benchmarks.registry import suite_class

    cls = suite_class(suite)
    own: list[str] = []
    if embedding_key is not None:
        if cls.name not in ("clustering", "annotation"):
            raise InputError(
                f"--embedding-key scores cell embeddings; suite {cls.name} needs "
                f"{', '.join(sorted(k.value for k in cls.required_kinds))} (use clustering or annotation)"
            )
        own.append(f"obsm:{embedding_key}")
    if gene_embeddings is not None:
        if cls.name not in ("gene-classification", "grn"):
            raise InputError(
                f"--gene-embeddings scores gene embeddings; suite {cls.name} does not use them "
                "(use gene-classification or grn)"
            )
        own.append(f"genes:{Path(gene_embeddings).stem}")
    out = list(models) + [m for m in own if m not in models]
    if own and not models:
        out += [c for c in cls.controls if c not in out]
    return out


def evaluate_embedding(
    adata: AnnData,
    obsm_key: str,
    suite: str = "clustering",
    label_key: str | None = None,
    batch_key: str | None = None,
    *,
    seeds: Sequence[int] = (0,),
    controls: bool = True,
    dataset_name: str = "adata",
    results_dir: str | os.PathLike[str] = "cgcbench-results",
    **kwargs: Any,
) -> pd.DataFrame:
    """Score an embedding already in ``adata.obsm[obsm_key]`` with the suite's metrics and controls.

    Parameters
    ----------
    adata
        Cells × genes with the embedding in ``obsm`` (the expression matrix feeds the controls).
    obsm_key
        The embedding's key; it is reported as model ``obsm:<obsm_key>``.
    suite
        ``"clustering"`` (scib metrics; needs ``label_key`` and ``batch_key``) or
        ``"annotation"`` (a logistic regression on the embedding, reference → query split).
    label_key, batch_key
        ``obs`` columns with cell types and batches.
    seeds
        Benchmark seeds (Leiden/UMAP seeds, annotation splits).
    controls
        Run the suite's controls beside it (``pca``, ``shuffled`` / ``majority``).
    dataset_name, results_dir, kwargs
        As for :func:`run`.

    Returns
    -------
    pandas.DataFrame
        As :func:`run`: the embedding's rows and the controls' rows.

    """
    if suite not in ("clustering", "annotation"):
        raise InputError(f"evaluate_embedding: suite {suite!r}; use 'clustering' or 'annotation'")
    models = [] if controls else [f"obsm:{obsm_key}"]
    return run(
        suite,
        models,
        adata=adata,
        seeds=seeds,
        dataset_name=dataset_name,
        label_key=label_key,
        batch_key=batch_key,
        embedding_key=obsm_key,
        results_dir=results_dir,
        **kwargs,
    )


def embed(
    adata: AnnData,
    model: str = "cgc",
    checkpoint: str | os.PathLike[str] | None = None,
    key: str | None = None,
    *,
    seed: int = 0,
    fit: bool = False,
    batch_key: str | None = None,
    organism: str | None = None,
    expression_kind: str | None = None,
    layer: str | None = None,
    gene_symbols_key: str | None = None,
    model_params: Mapping[str, Any] | None = None,
) -> AnnData:
    """Write a model's cell embeddings to ``adata.obsm[key]`` (and gene embeddings to ``varm``).

    Parameters
    ----------
    adata
        Cells × genes; validated and standardised exactly like a user file (expression kind
        and gene ids detected; pass ``expression_kind``/``organism``/``layer`` to override).
    model
        A model with cell embeddings (``cgc``, ``scgpt``, ``geneformer``, ``scvi``, ``pca``, …).
    checkpoint
        Pre-trained weights (the adapter's ``checkpoint`` setting); ``None``: the adapter's
        default (CGC pre-trains a small model once and caches it).
    key
        ``obsm`` key (default ``X_<model>``). Gene embeddings, where the model has them, go to
        ``adata.varm["<model>_genes"]`` (rows of genes the model does not know are NaN).
    seed
        Seed of any random choice (and of fine-tuning with ``fit``).
    fit
        Fit the model on ``adata`` first (self-supervised, as the clustering suite does;
        required by scVI, a no-op for zero-shot models).
    batch_key, organism, expression_kind, layer, gene_symbols_key, model_params
        As for :func:`run` (``model_params``: the adapter's settings).

    Returns
    -------
    anndata.AnnData
        ``adata`` itself, with ``obsm[key]`` set (and ``uns["cgcbench_embed"][key]``: model,
        init, checkpoint sha256 and settings).

    """
    import numpy as np

    from benchmarks.data.load import UserKeys, load_dataset
    from benchmarks.interface import TaskKind
    from benchmarks.registry import build_model, parse_model

    spec = parse_model(model)
    params = dict(model_params or {})
    if checkpoint is not None:
        params["checkpoint"] = str(checkpoint)
    adapter = build_model(spec, seed=seed, **params)
    caps = adapter.capabilities
    if not caps.supports(TaskKind.CELL_EMBEDDING):
        kinds = ", ".join(sorted(k.value for k in caps.task_kinds))
        raise InputError(f"model {spec.label} has no cell embeddings (it supports {kinds})")
    keys = UserKeys(batch_key=batch_key, organism=organism, expression_kind=expression_kind, layer=layer,
                    gene_symbols_key=gene_symbols_key).validated()
    with tempfile.TemporaryDirectory(prefix="cgcbench-embed-") as tmp:
        path = write_input(adata, "adata", Path(tmp))
        card, data = load_dataset(str(path), keys)
    from benchmarks.data.expression import conversion_to, convert

    kind = data.uns["cgcbench"]["dataset"]["expression_kind"]
    target = conversion_to(kind, caps.expression_kinds)
    if target is None:
        needs = ", ".join(sorted(caps.expression_kinds))
        raise InputError(f"model {spec.label} cannot take {kind} values (it needs {needs})")
    if target != kind:
        data = convert(data, kind, target)
    adapter.bind_dataset(data.uns["cgcbench"]["dataset"])
    if fit:
        adapter.fit(data, batch_key=batch_key)  # type: ignore[attr-defined]
    emb = np.asarray(adapter.embed_cells(data), dtype=np.float32)  # type: ignore[attr-defined]
    if emb.shape[0] != adata.n_obs:
        raise RuntimeError(f"{spec.label}.embed_cells returned {emb.shape[0]} rows for {adata.n_obs} cells")
    key = key or f"X_{spec.name}"
    adata.obsm[key] = emb
    info = adapter.info()
    meta: dict[str, Any] = {
        "model": info.label,
        "init": info.init,
        "checkpoint_sha256": info.checkpoint_sha256 or "",
        "seed": seed,
        "fit": fit,
    }
    if caps.supports(TaskKind.GENE_EMBEDDING) and data.n_vars == adata.n_vars:
        from benchmarks.genes import embed_gene_list

        id_type = "ensembl" if card.gene_id_type == "ensembl" else "symbol"
        column = "ensembl_id" if id_type == "ensembl" else "gene_symbol"
        genes = data.var[column] if column in data.var else data.var_names
        vectors, covered = embed_gene_list(adapter, [str(g) for g in genes], id_type)
        if covered.any():
            full = np.full((adata.n_vars, vectors.shape[1]), np.nan, dtype=np.float32)
            full[covered] = vectors
            adata.varm[f"{spec.name}_genes"] = full
            meta["gene_coverage"] = float(covered.mean())
    adata.uns.setdefault("cgcbench_embed", {})[key] = meta
    return adata
