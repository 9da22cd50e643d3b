"""Model and training configuration of Cell-Graph Compass.

:class:`CGCConfig` holds everything that changes the network or the cell graphs (sizes,
ablation switches, pre-processing constants) and is saved with every checkpoint.
:class:`TrainConfig` holds the optimisation settings of SPEC §4.
Both have a ``small()`` (CPU-sized) and a ``paper()`` (published sizes) preset and can be
read from a TOML file with ``[model]`` and ``[train]`` tables (see :func:`load_config`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cgc.errors import ConfigError

EDGE_TYPES: tuple[str, ...] = ("tftg", "coexpr", "pos")
NODE_FEATURES: tuple[str, ...] = ("token", "text", "value", "special")
INPUT_GENES: tuple[str, ...] = ("panel", "expressed")
VALUE_TARGETS: tuple[str, ...] = ("zscore", "bin")


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {unknown}; valid fields are {sorted(names)}"
        )
    kwargs = {}
    for k, v in data.items():
        kwargs[k] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


@dataclass(frozen=True)
class CGCConfig:
    """Architecture, graph and pre-processing settings of a CGC model.

    Parameters
    ----------
    d_model
        Width of node/edge embeddings and of the Transformer (paper: 512).
    n_transformer_layers, n_heads, d_ff
        Transformer depth, heads and feed-forward width (paper: 12, 8, 512).
    n_gnn_layers
        Number of message-passing layers implementing eq. 5–6 (paper: 3).
    max_genes
        At most this many non-zero genes per cell (paper: 1,200; bulk: 2,048).
    n_bins
        Number of relative expression bins, 0..n_bins-1 (paper: 51).
    mask_ratio
        Fraction of each cell's genes whose value is masked in pre-training (paper: 0.4).
    mask_value
        Input value given to masked genes.
    sample_mode
        How ``max_genes`` genes are drawn from a cell with more non-zero genes:
        ``"weighted"`` (without replacement, probability proportional to expression),
        ``"top"`` (highest expression) or ``"uniform"``.
    pos_window
        Genes closer than this in genome order are linked; offsets lie in
        ``-pos_window..pos_window`` (paper: 50).
    edge_budget
        Co-expression edges are subsampled when a cell has more than
        ``edge_budget × n_nodes`` edges; TF, position and cell edges are always kept.
    edge_budget_types
        Edge types the budget may drop (default ``("coexpr",)``: SPEC §6, the official
        rule). ``("tftg", "coexpr", "pos")`` makes the budget bind on every gene–gene edge
        (a 1,200-gene cell then has at most ``edge_budget × 1,201`` edges instead of ~7,000);
        an edge is dropped only if all of its types are listed. Cell edges are always kept.
    use_graph
        ``False`` removes the GNN (Transformer only: the paper's "no graph" ablation).
    edge_types
        Subset of ``("tftg", "coexpr", "pos")`` used to build cell graphs.
    node_features
        Subset of ``("token", "text", "value", "special")`` summed in eq. 1.
    n_special
        Size of the special-token table ``emb_s``.
    gnn_residual
        Add a residual connection and LayerNorm around each GNN layer (our choice; the
        published equations are applied unchanged inside the layer).
    dropout
        Dropout probability of the Transformer's residual branches and FFN.
    attn_dropout
        Dropout on attention weights. Default 0: a non-zero value forces PyTorch's
        unfused (math) attention kernel, several times slower on CPU.
    gene_loss_weight, cell_loss_weight
        Weights of eq. 10 and eq. 11 (paper: 1:1).
    node_norm
        Deviation from the paper (measured, see ``NodeEncoder``): each term of eq. 1 is
        layer-normalised before the sum, the value enters as ``bin / (n_bins - 1)`` in
        ``[0, 1]`` and masked values get a learned mask embedding. ``False`` is eq. 1
        taken literally on raw bin numbers, where the value term outweighs the gene token
        ~100:1 and cells become indistinguishable.
    input_genes
        Which genes make a cell's graph. ``"expressed"`` (paper): up to ``max_genes`` of
        the cell's non-zero genes. ``"panel"``: a fixed panel of the data set's
        ``max_genes`` most variable genes, zeros included (scGPT's include-zero mode), so
        that *which* genes are silent carries cell state.
    value_target
        What the masked-value heads predict. ``"bin"`` (paper): the within-cell bin,
        scaled to ``[0, 1]``. ``"zscore"``: the gene's log-normalised expression
        standardised per gene over the data set, so the target is the cell's deviation
        from the gene's typical level rather than a property of the gene.

    """

    d_model: int = 512
    n_transformer_layers: int = 12
    n_heads: int = 8
    d_ff: int = 512
    n_gnn_layers: int = 3
    max_genes: int = 1200
    n_bins: int = 51
    mask_ratio: float = 0.4
    mask_value: float = -1.0
    sample_mode: str = "weighted"
    pos_window: int = 50
    edge_budget: float = 4.0
    edge_budget_types: tuple[str, ...] = ("coexpr",)
    use_graph: bool = True
    edge_types: tuple[str, ...] = EDGE_TYPES
    node_features: tuple[str, ...] = NODE_FEATURES
    n_special: int = 4
    gnn_residual: bool = True
    dropout: float = 0.1
    attn_dropout: float = 0.0
    gene_loss_weight: float = 1.0
    cell_loss_weight: float = 1.0
    node_norm: bool = True
    input_genes: str = "panel"
    value_target: str = "zscore"

    def __post_init__(self) -> None:
        bad_e = sorted(set(self.edge_types) - set(EDGE_TYPES))
        if bad_e:
            raise ConfigError(f"CGCConfig.edge_types: unknown {bad_e}; choose from {EDGE_TYPES}")
        bad_b = sorted(set(self.edge_budget_types) - set(EDGE_TYPES))
        if bad_b:
            raise ConfigError(
                f"CGCConfig.edge_budget_types: unknown {bad_b}; choose from {EDGE_TYPES}"
            )
        bad_n = sorted(set(self.node_features) - set(NODE_FEATURES))
        if bad_n:
            raise ConfigError(
                f"CGCConfig.node_features: unknown {bad_n}; choose from {NODE_FEATURES}"
            )
        if not self.node_features:
            raise ConfigError("CGCConfig.node_features is empty; keep at least one feature")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"CGCConfig: d_model={self.d_model} must be divisible by n_heads={self.n_heads}"
            )
        if self.sample_mode not in ("weighted", "top", "uniform"):
            raise ConfigError(
                f"CGCConfig.sample_mode={self.sample_mode!r}; use 'weighted', 'top' or 'uniform'"
            )
        if self.input_genes not in INPUT_GENES:
            raise ConfigError(f"CGCConfig.input_genes={self.input_genes!r}; use one of {INPUT_GENES}")
        if self.value_target not in VALUE_TARGETS:
            raise ConfigError(
                f"CGCConfig.value_target={self.value_target!r}; use one of {VALUE_TARGETS}"
            )
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"CGCConfig.mask_ratio={self.mask_ratio} must be in [0, 1)")
        if self.n_bins < 3 or self.max_genes < 1 or self.pos_window < 1:
            raise ConfigError("CGCConfig: n_bins >= 3, max_genes >= 1 and pos_window >= 1")
        object.__setattr__(self, "edge_types", tuple(self.edge_types))
        object.__setattr__(self, "edge_budget_types", tuple(self.edge_budget_types))
        object.__setattr__(self, "node_features", tuple(self.node_features))

    @classmethod
    def paper(cls, **overrides: Any) -> CGCConfig:
        """Return the published sizes (SPEC §3) with this project's measured deviations.

        ``CGCConfig.paper(node_norm=False, input_genes="expressed", value_target="bin")``
        is the publication taken literally.
        """
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CGCConfig:
        """Build from :meth:`to_dict` output, rejecting unknown fields.

        Configurations saved before ``node_norm``/``input_genes``/``value_target`` existed
        describe the paper-literal model and load as such.
        """
        legacy = {"node_norm": False, "input_genes": "expressed", "value_target": "bin"}
        return _from_dict(cls, {**legacy, **data}, "CGCConfig")

    @classmethod
    def small(cls, **overrides: Any) -> CGCConfig:
        """Return a CPU-sized configuration with the same structure as the paper's."""
        base = cls(
            d_model=64,
            n_transformer_layers=2,
            n_heads=4,
            d_ff=128,
            n_gnn_layers=2,
            max_genes=256,
            dropout=0.0,
        )
        return dataclasses.replace(base, **overrides)

    def replace(self, **overrides: Any) -> CGCConfig:
        """Return a copy with some fields replaced (e.g. ablations)."""
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON/TOML-serialisable dictionary."""
        d = dataclasses.asdict(self)
        d["edge_types"] = list(self.edge_types)
        d["node_features"] = list(self.node_features)
        return d



@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of masked pre-training (SPEC §4).

    Parameters
    ----------
    lr, betas, eps, weight_decay
        Adam settings (paper: 1e-4, (0.9, 0.999), 1e-8, 0).
    warmup_steps, decay_gamma, decay_every
        Linear warm-up, then the learning rate is multiplied by ``decay_gamma`` every
        ``decay_every`` optimiser steps (paper: 5,000, 0.995, 1,000).
    batch_size, grad_accum
        Cells per micro-batch per process and micro-batches per optimiser step
        (paper: 32, 2).
    max_steps
        Optimiser steps; ``None`` means ``epochs`` passes over the corpus.
    epochs
        Passes over the training split when ``max_steps`` is ``None`` (paper: 3).
    grad_clip
        Gradient-norm clipping (``None`` disables it).
    eval_every, checkpoint_every, log_every
        Intervals in optimiser steps.
    val_batches
        Maximum number of validation batches per evaluation (``None``: the whole split).
    num_workers
        Data-loader worker processes per rank.
    amp
        Mixed precision on CUDA (bf16 when supported, else fp16 with loss scaling).
    memory_fraction
        Fail before training when the estimated peak exceeds this fraction of free memory.
    sparse_gene_table
        Update only the rows of the gene table ``emb_g`` that a step touched (sparse
        gradient, :class:`cgc.train.optim.RowSparseAdam`; "lazy" Adam: untouched rows'
        moments do not decay). Saves the dense ``V × d`` gradient and Adam pass over the
        table every step. Equals Adam for rows touched at every step; single process only.

    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 5000
    decay_gamma: float = 0.995
    decay_every: int = 1000
    batch_size: int = 32
    grad_accum: int = 2
    max_steps: int | None = None
    epochs: int = 3
    grad_clip: float | None = 1.0
    eval_every: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 10
    val_batches: int | None = 50
    num_workers: int = 0
    amp: bool = True
    memory_fraction: float = 0.9
    sparse_gene_table: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("TrainConfig: batch_size and grad_accum must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr={self.lr} must be > 0")
        object.__setattr__(self, "betas", tuple(self.betas))

    @classmethod
    def paper(cls, **overrides: Any) -> TrainConfig:
        """Return the published optimisation settings."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def small(cls, **overrides: Any) -> TrainConfig:
        """Return settings for short CPU runs."""
        base = cls(
            lr=1e-3,
            warmup_steps=20,
            decay_every=100,
            batch_size=8,
            grad_accum=1,
            eval_every=50,
            checkpoint_every=100,
            log_every=5,
            val_batches=8,
        )
        return dataclasses.replace(base, **overrides)

    def replace(self, **overrides: Any) -> TrainConfig:
        """Return a copy with some fields replaced."""
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dictionary."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict` output, rejecting unknown fields."""
        return _from_dict(cls, data, "TrainConfig")


@dataclass(frozen=True)
class RunConfig:
    """A model configuration together with its training configuration."""

    model: CGCConfig = field(default_factory=CGCConfig.paper)
    train: TrainConfig = field(default_factory=TrainConfig.paper)


def load_config(spec: str | Path) -> RunConfig:
    """Resolve ``"small"``, ``"paper"`` or a TOML file into a :class:`RunConfig`.

    A TOML file may name a preset with a top-level ``base = "small"`` (default ``"paper"``)
    and override fields in ``[model]`` and ``[train]`` tables.

    Parameters
    ----------
    spec
        Preset name or path to a ``.toml`` file.

    Returns
    -------
    RunConfig
        The model and training configuration.

    """
    s = str(spec)
    if s in ("small", "paper"):
        return RunConfig(getattr(CGCConfig, s)(), getattr(TrainConfig, s)())
    path = Path(s)
    if not path.is_file():
        raise ConfigError(f"--config {s!r}: neither 'small', 'paper' nor an existing TOML file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from exc
    base = data.pop("base", "paper")
    if base not in ("small", "paper"):
        raise ConfigError(f"{path}: base={base!r}; use 'small' or 'paper'")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {unknown}; use [model] and [train]")
    model_d = {**getattr(CGCConfig, base)().to_dict(), **data.get("model", {})}
    train_d = {**getattr(TrainConfig, base)().to_dict(), **data.get("train", {})}
    return RunConfig(
        _from_dict(CGCConfig, model_d, f"{path} [model]"),
        _from_dict(TrainConfig, train_d, f"{path} [train]"),
    )
