"""``gears``: GEARS (Roohani et al. 2023) through PyPI ``cell-gears`` 0.1.2.

The adapter drives GEARS's own ``PertData`` / ``GEARS`` classes; only the inputs GEARS would
download from Harvard Dataverse are produced locally and placed where GEARS looks for them:

* ``<data_path>/gene2go_all.pkl`` — gene symbol → set of GO ids, built from the ``gene2go_hs``
  card (org.Hs.eg.db; ``ND`` "no data" annotations dropped), or the official file when the
  ``gears_gene2go`` card is cached;
* ``<data_path>/essential_all_data_pert_genes.pkl`` — the genes that may be perturbed (the
  nodes of the GO graph): every GO-annotated gene (``pert_universe="go"``, so that genes first
  seen at test time can be predicted) or only the data's genes plus the perturbed genes of the
  training conditions (``"data"``, small and fast);
* ``<data_path>/go_essential_all/go_essential_all.csv`` — GEARS's GO graph: Jaccard similarity
  of the genes' GO sets, edges with Jaccard > 0.1, the strongest ``k + 1`` per target gene
  (GEARS then keeps ``k`` = ``num_similar_genes_go_graph``). The all-gene graph takes about a
  minute on two CPU cores and is cached in the cgcbench data directory.

GEARS then runs unchanged: ``new_data_process`` (DE genes, non-dropout genes), a ``custom``
split (a seeded ``val_fraction`` of the training conditions for model selection, no test set),
``model_initialize`` and ``train``; ``predict`` gives the mean predicted profile over control
cells. scipy >= 1.15 rejects GEARS's ``X[pandas.Series]`` row selection in ``GEARS.__init__``;
the adapter hands GEARS a CSR matrix subclass that converts a Series key to a NumPy array.

Checkpoints: ``checkpoint=`` / ``$GEARS_CHECKPOINT`` — a directory written by
``GEARS.save_model`` (``config.pkl`` + ``model.pt``), loaded with ``GEARS.load_pretrained``
for data with the same genes and perturbation graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from baselines.checkpoints import UserCheckpointMixin
from baselines.gene_ids import checkpoint_setting, resource_path, var_gene_ids
from benchmarks.data.fetch import data_dir
from benchmarks.errors import CgcbenchError, InputError
from benchmarks.interface import Capabilities, ModelAdapter, PerturbationMixin, TaskKind

log = logging.getLogger(__name__)

CTRL = "ctrl"


class SeriesIndexableCSR(sp.csr_matrix):
    """CSR matrix that accepts a pandas boolean Series as row key (GEARS 0.1.2 passes one)."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, pd.Series):
            key = key.to_numpy()
        elif isinstance(key, tuple):
            key = tuple(k.to_numpy() if isinstance(k, pd.Series) else k for k in key)
        return super().__getitem__(key)


def gears_condition(condition: str) -> str:
    """Normalise a condition to GEARS notation: ``ctrl``, ``A+ctrl`` or ``A+B``."""
    parts = [p for p in str(condition).split("+") if p]
    genes = [p for p in parts if p != CTRL]
    if not genes:
        return CTRL
    if len(genes) == 1:
        return f"{genes[0]}+{CTRL}"
    if len(genes) == 2:
        return f"{genes[0]}+{genes[1]}"
    raise InputError(f"GEARS predicts single or double perturbations, got {condition!r}")


def condition_genes(condition: str) -> list[str]:
    """Perturbed genes of a condition (``[]`` for control)."""
    return [p for p in str(condition).split("+") if p and p != CTRL]


def read_gene2go(path: str | Path, drop_evidence: Sequence[str] = ("ND",)) -> dict[str, set[str]]:
    """Read a ``symbol``/``go_id``/``evidence`` table into GEARS's gene → GO-set dictionary."""
    df = pd.read_csv(path, sep="\t", dtype=str, usecols=lambda c: c in {
        "symbol", "go_id", "evidence"})
    if "evidence" in df.columns:
        df = df[~df["evidence"].isin(list(drop_evidence))]
    out: dict[str, set[str]] = {}
    for sym, go in zip(df["symbol"], df["go_id"], strict=True):
        out.setdefault(sym, set()).add(go)
    return out


def go_jaccard_edges(
    gene2go: dict[str, set[str]], genes: Sequence[str], k: int, chunk: int = 1000
) -> pd.DataFrame:
    """GEARS's GO graph over ``genes``: Jaccard > 0.1, the ``k`` strongest sources per target.

    Returns a ``source, target, importance`` edge list (a gene's edge to itself included, as
    in GEARS's own ``make_GO``).
    """
    genes = [g for g in genes if g in gene2go]
    terms = sorted({t for g in genes for t in gene2go[g]})
    tindex = {t: i for i, t in enumerate(terms)}
    rows = np.repeat(np.arange(len(genes)), [len(gene2go[g]) for g in genes])
    cols = np.fromiter((tindex[t] for g in genes for t in sorted(gene2go[g])), dtype=np.int64,
                       count=len(rows))
    G = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                      shape=(len(genes), len(terms)))
    n = np.asarray(G.sum(1)).ravel().astype(np.float32)
    GT = G.T.tocsr()
    names = np.asarray(genes)
    out = []
    for s in range(0, len(genes), chunk):
        P = (G[s: s + chunk] @ GT).tocoo()
        r, c, inter = P.row, P.col, P.data
        jac = inter / (n[r + s] + n[c] - inter)
        m = jac > 0.1
        r, c, jac = r[m], c[m], jac[m]
        order = np.lexsort((c, -jac, r))
        r, c, jac = r[order], c[order], jac[order]
        rank = np.arange(len(r)) - np.searchsorted(r, r, side="left")
        keep = rank < k
        out.append(pd.DataFrame({"source": names[c[keep]], "target": names[r[keep] + s],
                                 "importance": jac[keep].astype(np.float64)}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(
        columns=["source", "target", "importance"])


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence GEARS's progress prints (it writes to stderr/stdout directly)."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        yield


class GEARSAdapter(UserCheckpointMixin, ModelAdapter, PerturbationMixin):
    """GEARS perturbation-response prediction (``cell-gears`` ``PertData`` + ``GEARS``).

    Parameters
    ----------
    checkpoint
        Directory written by ``GEARS.save_model`` (default ``$GEARS_CHECKPOINT``); makes
        ``init="pretrained"``.
    epochs
        Training epochs (GEARS default 20; *quick*: 2).
    lr, weight_decay
        Adam settings (GEARS defaults 1e-3, 5e-4).
    batch_size
        Cells per batch (GEARS tutorials: 32).
    hidden_size, decoder_hidden_size, num_go_gnn_layers, num_gene_gnn_layers
        GEARS architecture (defaults 64 / 16 / 1 / 1; *quick*: hidden 32).
    num_similar_genes_go_graph, num_similar_genes_co_express_graph, coexpress_threshold
        GEARS graph settings (defaults 20 / 20 / 0.4).
    pert_universe
        ``"go"`` (every GO-annotated gene can be perturbed) or ``"data"`` (the data's genes
        and the training perturbations only).
    val_fraction
        Share of training conditions held out for GEARS's model selection.
    work_dir
        Folder for GEARS's ``data_path`` (default: a temporary folder).

    """

    name = "gears"
    requires = ("gears", "torch_geometric")
    install_hint = "pip install 'cgcbench[baselines]' (cell-gears, torch-geometric)"
    description = "GEARS (cell-gears 0.1.2): GO-graph + co-expression GNN perturbation model."
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.PERTURBATION}),
        organisms=frozenset({"human"}),
        gene_id_type="symbol",
        expression_kinds=frozenset({"log1p_normalized"}),
    )

    def __init__(
        self,
        *,
        checkpoint: str | None = None,
        epochs: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        batch_size: int = 32,
        hidden_size: int | None = None,
        decoder_hidden_size: int = 16,
        num_go_gnn_layers: int = 1,
        num_gene_gnn_layers: int = 1,
        num_similar_genes_go_graph: int = 20,
        num_similar_genes_co_express_graph: int = 20,
        coexpress_threshold: float = 0.4,
        pert_universe: str = "go",
        val_fraction: float = 0.1,
        work_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            checkpoint=checkpoint, epochs=epochs, lr=lr, weight_decay=weight_decay,
            batch_size=batch_size, hidden_size=hidden_size,
            decoder_hidden_size=decoder_hidden_size, num_go_gnn_layers=num_go_gnn_layers,
            num_gene_gnn_layers=num_gene_gnn_layers,
            num_similar_genes_go_graph=num_similar_genes_go_graph,
            num_similar_genes_co_express_graph=num_similar_genes_co_express_graph,
            coexpress_threshold=coexpress_threshold, pert_universe=pert_universe,
            val_fraction=val_fraction, work_dir=work_dir, **kwargs,
        )
        if pert_universe not in ("go", "data"):
            raise ValueError(f"pert_universe={pert_universe!r}; use 'go' or 'data'")
        self.checkpoint_path = checkpoint_setting(checkpoint, "GEARS_CHECKPOINT")
        self.epochs = int(epochs if epochs is not None else (2 if self.quick else 20))
        self.lr, self.weight_decay, self.batch_size = float(lr), float(weight_decay), int(
            batch_size)
        self.model_kwargs = {
            "hidden_size": int(hidden_size or (32 if self.quick else 64)),
            "decoder_hidden_size": int(decoder_hidden_size),
            "num_go_gnn_layers": int(num_go_gnn_layers),
            "num_gene_gnn_layers": int(num_gene_gnn_layers),
            "num_similar_genes_go_graph": int(num_similar_genes_go_graph),
            "num_similar_genes_co_express_graph": int(num_similar_genes_co_express_graph),
            "coexpress_threshold": float(coexpress_threshold),
        }
        self.pert_universe, self.val_fraction = pert_universe, float(val_fraction)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.work_dir = Path(work_dir) if work_dir else None
        self.gears_: Any = None
        self.genes_: list[str] = []
        self.var_names_: pd.Index | None = None
        self.coverage_: float | None = None

    def __del__(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(Exception):
                self._tmp.cleanup()

    def checkpoint_weights(self) -> Path:
        """GEARS's ``model.pt``."""
        assert self.checkpoint_path is not None
        return self.checkpoint_path / "model.pt"

    def extra_metrics(self) -> dict[str, float]:
        """Return the share of asked conditions GEARS could predict (genes in its GO graph)."""
        return {"condition_coverage": self.coverage_} if self.coverage_ is not None else {}

    # -- inputs GEARS would download -------------------------------------------------------
    def _gene2go(self) -> tuple[dict[str, set[str]], str]:
        try:
            from benchmarks.data.cards import get_card
            from benchmarks.data.fetch import resolve_file
            from benchmarks.safe_pickle import load_plain_pickle

            card = get_card("gears_gene2go")
            path = resolve_file(card, card.files[0], allow_download=False)
            # a card's file is untrusted input: plain data only, never code (issue 15)
            data = load_plain_pickle(path)
            if not isinstance(data, dict):
                raise InputError(f"{path}: expected a pickled dict of gene → GO terms")
            return {str(k): {str(t) for t in v} for k, v in data.items()}, "gears_gene2go"
        except InputError:  # a hostile or malformed file is an error, not a reason to fall back
            raise
        except (CgcbenchError, OSError, IndexError):
            pass
        path = resource_path("gene2go_hs")
        return read_gene2go(path), "gene2go_hs"

    def _go_edges(self, gene2go: dict[str, set[str]], universe: list[str], source: str) -> Any:
        k = self.model_kwargs["num_similar_genes_go_graph"] + 1
        key = hashlib.sha256(
            ("\n".join(universe) + f"|{k}|{source}").encode()).hexdigest()[:16]
        cache = data_dir() / "gears" / f"go_graph_{key}.csv"
        if cache.is_file():
            return pd.read_csv(cache)
        edges = go_jaccard_edges(gene2go, universe, k)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".part")
        edges.to_csv(tmp, index=False)
        os.replace(tmp, cache)
        return edges

    def _data_path(self) -> Path:
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            return self.work_dir
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cgcbench-gears-")
        return Path(self._tmp.name)

    def _gears_adata(self, train: ad.AnnData, condition_key: str) -> ad.AnnData:
        symbols = var_gene_ids(train, "symbol")
        names = pd.Index([s if s else str(v) for s, v in zip(symbols, train.var_names,
                                                             strict=True)])
        if names.duplicated().any():
            names = pd.Index(ad.utils.make_index_unique(names))
        conditions = train.obs[condition_key].astype(str).map(gears_condition)
        if (conditions == CTRL).sum() == 0:
            raise InputError(f"gears needs control cells (obs[{condition_key!r}] == 'ctrl')")
        X = sp.csr_matrix(train.X, dtype=np.float32)
        obs = pd.DataFrame({"condition": conditions.to_numpy(),
                            "cell_type": "cell"}, index=train.obs_names.astype(str))
        var = pd.DataFrame({"gene_name": names.to_numpy()}, index=names)
        self.var_names_ = train.var_names
        return ad.AnnData(X=X, obs=obs, var=var)

    # -- task ------------------------------------------------------------------------------
    def fit_perturbation(self, train: ad.AnnData, condition_key: str = "condition") -> None:
        """Build GEARS's inputs, process the data with ``PertData`` and train (or load)."""
        import torch

        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        with _quiet():
            from gears import GEARS, PertData

        adata = self._gears_adata(train, condition_key)
        gene2go, go_source = self._gene2go()
        self.params["go_source"] = go_source
        # GEARS's DE step (scanpy rank_genes_groups) needs >= 2 cells per condition, and a
        # condition is only learnable if all its genes are in the GO graph
        sizes = adata.obs["condition"].value_counts()
        usable = [c for c, n in sizes.items() if n >= 2 and all(
            g in gene2go for g in condition_genes(c))]
        dropped = sorted(set(sizes.index) - set(usable))
        if dropped:
            log.warning("gears: %d training conditions dropped (< 2 cells or genes without GO "
                        "annotation), e.g. %s", len(dropped), ", ".join(dropped[:5]))
        self.params["dropped_train_conditions"] = len(dropped)
        adata = adata[adata.obs["condition"].isin(usable)].copy()
        if CTRL not in usable or len(usable) < 3:
            raise InputError(
                "gears: needs control cells and at least two perturbations with >= 2 cells each "
                f"and GO-annotated genes; usable conditions: {usable}"
            )
        perturbed = sorted({g for c in adata.obs["condition"].unique() for g in condition_genes(c)})
        if self.pert_universe == "go":
            universe = sorted(gene2go)
        else:
            universe = sorted((set(adata.var["gene_name"]) | set(perturbed)) & set(gene2go))
        path = self._data_path()
        with open(path / "gene2go_all.pkl", "wb") as fh:
            pickle.dump(gene2go, fh)
        with open(path / "essential_all_data_pert_genes.pkl", "wb") as fh:
            pickle.dump(universe, fh)
        (path / "go_essential_all").mkdir(exist_ok=True)
        self._go_edges(gene2go, universe, go_source).to_csv(
            path / "go_essential_all" / "go_essential_all.csv", index=False)

        name = f"cgcbench_{self.seed}"
        shutil.rmtree(path / name, ignore_errors=True)
        with _quiet():
            pert_data = PertData(str(path), default_pert_graph=True)
            pert_data.new_data_process(dataset_name=name, adata=adata)
            pert_data.load(data_path=str(path / name))
        conds = [c for c in pert_data.adata.obs["condition"].unique().tolist() if c != CTRL]
        rng = np.random.default_rng(self.seed)
        n_val = max(1, round(self.val_fraction * len(conds))) if len(conds) > 1 else 0
        val = sorted(rng.choice(sorted(conds), n_val, replace=False).tolist()) if n_val else []
        split = {"train": [CTRL] + [c for c in conds if c not in val], "val": val or [CTRL],
                 "test": []}
        with open(path / f"{name}_split.pkl", "wb") as fh:
            pickle.dump(split, fh)
        n_train_cells = int(pert_data.adata.obs["condition"].isin(split["train"]).sum())
        with _quiet():
            pert_data.prepare_split(split="custom", split_dict_path=str(path / f"{name}_split.pkl"))
            pert_data.get_dataloader(batch_size=max(1, min(self.batch_size, n_train_cells)),
                                     test_batch_size=self.batch_size)
        pert_data.dataloader.pop("test_loader", None)
        if pert_data.adata.is_view:
            pert_data.adata = pert_data.adata.copy()
        csr = sp.csr_matrix(pert_data.adata.X)
        pert_data.adata.X = SeriesIndexableCSR(csr)
        try:
            with _quiet():
                model = GEARS(pert_data, device="cpu")
        finally:
            pert_data.adata.X = csr
        with _quiet():
            if self.checkpoint_path is not None:
                _load_pretrained_safely(model, self.checkpoint_path)
            else:
                model.model_initialize(**self.model_kwargs)
                model.train(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay)
        self.gears_ = model
        self.genes_ = list(model.gene_list)
        self.params["n_pert_genes"] = len(model.pert_list)

    def predict_perturbation(self, control: ad.AnnData, conditions: Sequence[str]) -> pd.DataFrame:
        """Return GEARS's mean predicted profile per condition.

        GEARS predicts from the control cells it was trained with (``control`` fixes the
        output genes). A condition with a gene outside GEARS's GO graph cannot be predicted by
        GEARS: its row is the control mean (no change), it is listed in
        ``params["unpredictable_conditions"]`` and it lowers ``condition_coverage``.
        """
        if self.gears_ is None:
            raise RuntimeError("GEARSAdapter.predict_perturbation called before fit_perturbation")
        import torch

        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        pert_set = set(self.gears_.pert_list)
        ctrl_mean = np.asarray(self.gears_.ctrl_expression.cpu().numpy(), dtype=np.float64)
        rows, ok, unpredictable = [], 0, []
        for cond in conditions:
            genes = condition_genes(gears_condition(cond))
            if not genes:
                rows.append(ctrl_mean)
                ok += 1
            elif all(g in pert_set for g in genes):
                with _quiet():
                    pred = self.gears_.predict([genes])
                rows.append(np.asarray(pred["_".join(genes)], dtype=np.float64))
                ok += 1
            else:  # GEARS cannot represent it: predict no change, and say so
                rows.append(ctrl_mean)
                unpredictable.append(str(cond))
        self.coverage_ = ok / len(conditions) if len(conditions) else 1.0
        self.params["unpredictable_conditions"] = unpredictable
        assert self.var_names_ is not None
        out = pd.DataFrame(np.vstack(rows) if rows else np.zeros((0, len(self.genes_))),
                           index=pd.Index([str(c) for c in conditions], name="condition"),
                           columns=self.var_names_)
        if control.n_vars and not control.var_names.equals(self.var_names_):
            out = out.reindex(columns=control.var_names)
        return out


def _load_pretrained_safely(model: Any, path: Path) -> None:
    """``GEARS.load_pretrained`` without unpickling arbitrary objects.

    GEARS reads ``config.pkl`` with :func:`pickle.load` and ``model.pt`` with a plain
    ``torch.load``; both are user files. Here ``config.pkl`` goes through
    :func:`benchmarks.weights_io.load_pickled_tensors` (plain data + tensors only) and
    ``model.pt`` through ``torch.load(weights_only=True)``; the rest is GEARS's own steps.
    """
    from benchmarks.weights_io import load_pickled_tensors, load_state_dict

    config = load_pickled_tensors(path / "config.pkl", "GEARS config.pkl")
    if not isinstance(config, dict):
        raise InputError(
            f"{path / 'config.pkl'}: expected a dict of GEARS settings, found {type(config).__name__}"
        )
    for key in ("device", "num_genes", "num_perts"):
        config.pop(key, None)
    model.model_initialize(**config)
    model.config = config
    state = load_state_dict(path / "model.pt", "GEARS model.pt")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise InputError(
            f"{path / 'model.pt'}: weights do not fit config.pkl and the data's genes ({first})"
        ) from exc
    model.model = model.model.to(model.device)
    model.best_model = model.model
