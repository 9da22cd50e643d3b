"""Read the official CGCompass release: weights, gene vocabulary and gene text embeddings.

The release (Google Drive folder linked from the README of epang-ucas/Cell-Graph-Compass)
holds ``CGCompass_pretrain_weights.pt`` and, in ``scData/bioFeature_embs``, ``vocab.json``,
``embeding.pickle``, ``tf_tg_graph`` and ``chromo_graph``. The weights are the state dict of
Uni-Core's ``ScModel`` — names under ``model.`` — either bare or inside a Uni-Core checkpoint
(``torch.load(path)["model"]`` with ``args``, ``optimizer_history`` … beside it).

* :func:`load_official_state` reads the file with ``torch.load(weights_only=True)``. A
  Uni-Core checkpoint also pickles its ``argparse.Namespace``; that one class (and NumPy
  scalars/dtypes, which Uni-Core's meters store) is the documented allow-list passed to
  :func:`torch.serialization.safe_globals`. Any other global is refused before loading.
* :func:`map_official_names` maps **every** official parameter name onto
  :class:`cgc.nn.official.OfficialCGC`; a name it does not know is an error, never dropped.
* :func:`config_from_state` reads the sizes from the tensors' shapes (``nhead`` is not in any
  shape: the checkpoint's ``args.nhead``, else the release's 8).
* :func:`load_official` = all of the above plus a strict load that names the first missing,
  unexpected or mis-shaped parameter; :func:`official_state_dict` is the way back (a model's
  tensors under the official names, the layout the release is saved in).
* :func:`read_official_vocab` (``vocab.json``: token → id) and :func:`read_text_embeddings`
  (``embeding.pickle``: a pandas Series of 768-d arrays indexed by vocabulary id, read by an
  allow-list unpickler that rebuilds only pandas/NumPy containers).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cgc.errors import CheckpointError, InputFileError
from cgc.nn.official import OfficialCGC, OfficialConfig
from cgc.pickled_data import SERIES_GLOBALS, numpy_global

RELEASE_NHEAD = 8
"""Attention heads of the released model (``--nhead 8`` in the official scripts)."""

# (official-name pattern, cgcbench-name template); the first pattern that matches wins.
_RULES: list[tuple[str, str]] = [
    (r"gene_encoder\.embedding\.weight", "node.emb_g.weight"),
    (r"gene_encoder\.norm\.(weight|bias)", r"node.norm_g.\1"),
    (r"value_encoder\.linear1\.(weight|bias)", r"node.value_lin1.\1"),
    (r"value_encoder\.linear2\.(weight|bias)", r"node.value_lin2.\1"),
    (r"value_encoder\.norm\.(weight|bias)", r"node.norm_v.\1"),
    (r"gene_summary_encoder\.layer\.(weight|bias)", r"node.text_lin.\1"),
    (r"bn\.(weight|bias|running_mean|running_var|num_batches_tracked)", r"node.bn.\1"),
    (r"dsbn\.bns\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)", r"node.dsbn.\1.\2"),
    (r"batch_encoder\.embedding\.weight", "batch_emb.weight"),
    (r"batch_encoder\.norm\.(weight|bias)", r"batch_norm.\1"),
    (r"edge_encoder\.tftg_embedding\.0\.weight", "edge.emb_tftg.weight"),
    (r"edge_encoder\.tftg_embedding\.1\.(weight|bias)", r"edge.norm_tftg.\1"),
    (r"edge_encoder\.corr_embedding\.0\.(weight|bias)", r"edge.corr_lin1.\1"),
    (r"edge_encoder\.corr_embedding\.2\.(weight|bias)", r"edge.corr_lin2.\1"),
    (r"edge_encoder\.corr_embedding\.3\.(weight|bias)", r"edge.norm_corr.\1"),
    (r"edge_encoder\.chromo_embedding\.0\.weight", "edge.emb_pos.weight"),
    (r"edge_encoder\.chromo_embedding\.1\.(weight|bias)", r"edge.norm_pos.\1"),
    (r"gnn_encoder\.encoder_layers\.(\d+)\.conv\.message_func\.(\d+)\.(weight|bias)", r"gnn.\1.msg.\2.\3"),
    (
        r"gnn_encoder\.encoder_layers\.(\d+)\.edge_message_func\.(\d+)\.(weight|bias)",
        r"gnn.\1.edge_msg.\2.\3",
    ),
    (r"gnn_encoder\.encoder_layers\.(\d+)\.norm\.0\.(weight|bias)", r"gnn.\1.node_norm.\2"),
    (r"gnn_encoder\.encoder_layers\.(\d+)\.norm\.1\.(weight|bias)", r"gnn.\1.ff_norm.\2"),
    (r"gnn_encoder\.encoder_layers\.(\d+)\.edge_norm\.(weight|bias)", r"gnn.\1.edge_norm.\2"),
    (r"gnn_encoder\.encoder_layers\.(\d+)\.ff_func\.(\d+)\.(weight|bias)", r"gnn.\1.ff.\2.\3"),
    (r"transformer_encoder\.layers\.(\d+)\.self_attn\.Wqkv\.(weight|bias)", r"transformer.\1.qkv.\2"),
    (r"transformer_encoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", r"transformer.\1.qkv.\2"),
    (r"transformer_encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"transformer.\1.out.\2"),
    (r"transformer_encoder\.layers\.(\d+)\.linear1\.(weight|bias)", r"transformer.\1.ff1.\2"),
    (r"transformer_encoder\.layers\.(\d+)\.linear2\.(weight|bias)", r"transformer.\1.ff2.\2"),
    (r"transformer_encoder\.layers\.(\d+)\.norm([12])\.(weight|bias)", r"transformer.\1.norm\2.\3"),
    (r"decoder\.fc\.(\d+)\.(weight|bias)", r"expr.\1.\2"),
    (r"decoder\.zero_logit\.(\d+)\.(weight|bias)", r"expr_zero.\1.\2"),
    (r"mvc_decoder\.gene2query\.(weight|bias)", r"mvc_query.\1"),
    (r"mvc_decoder\.W\.weight", "mvc_W.weight"),
    (r"mvc_decoder\.W_zero_logit\.(weight|bias)", r"mvc_W_zero.\1"),
    (r"cls_decoder\._decoder\.(\d+)\.(weight|bias)", r"cls.layers.\1.\2"),
    (r"cls_decoder\.out_layer\.(weight|bias)", r"cls.out.\1"),
    (r"grad_reverse_discriminator\._decoder\.(\d+)\.(weight|bias)", r"dab.layers.\1.\2"),
    (r"grad_reverse_discriminator\.out_layer\.(weight|bias)", r"dab.out.\1"),
]
_COMPILED = [(re.compile(p + r"\Z"), t) for p, t in _RULES]

ALLOWED_CHECKPOINT_GLOBALS = (
    "argparse.Namespace",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
)
"""Globals a Uni-Core checkpoint may reference besides tensors (``torch.load`` allow-list)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _safe_globals(path: Path) -> list[Any]:
    """Return the allow-listed globals the file needs; refuse any other global."""
    import argparse

    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch file ({path.stat().st_size:,} bytes; {_first_line(exc)}); "
            "it is truncated or of another format — download CGCompass_pretrain_weights.pt again "
            "and check its sha256"
        ) from exc
    refused = sorted(
        g for g in needed if g not in ALLOWED_CHECKPOINT_GLOBALS and not g.startswith("numpy.dtypes.")
    )
    if refused:
        raise CheckpointError(
            f"{path}: refused to load: the file references {', '.join(refused[:3])}, which a weights "
            "file does not need (allowed besides tensors: argparse.Namespace, NumPy scalars); it is "
            "not the CGCompass release — only load files you trust"
        )
    out: list[Any] = [argparse.Namespace]
    if any(g.startswith("numpy") for g in needed):
        core = np._core if hasattr(np, "_core") else np.core  # type: ignore[attr-defined]
        out += [core.multiarray.scalar, np.dtype]
        out += [getattr(np.dtypes, g.rsplit(".", 1)[1]) for g in needed if g.startswith("numpy.dtypes.")]
    return out


def load_official_state(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read an official weights file and return its ``GeneModel`` state dict and ``args``.

    Accepts a bare ``ScModel`` state dict (``model.*`` names), a ``GeneModel`` state dict
    (no prefix) or a Uni-Core checkpoint (``{"model": state_dict, "args": Namespace, …}``).

    Returns
    -------
    state : dict
        Official parameter names without the ``model.`` prefix → tensors.
    args : dict
        The checkpoint's ``args`` (empty for a bare state dict).

    Raises
    ------
    CheckpointError
        Missing, truncated, not a PyTorch file, needs globals outside the allow-list, or
        holds no tensor state dict.

    """
    f = Path(path)
    if not f.is_file():
        raise CheckpointError(f"{f}: official CGC weights not found; pass the downloaded .pt file")
    allowed = _safe_globals(f)
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{f}: cannot read the official CGC weights ({_first_line(exc)}); the file is truncated "
            "or not a PyTorch file — download it again and check its sha256"
        ) from exc
    args: dict[str, Any] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        raw_args = obj.get("args")
        args = dict(vars(raw_args)) if raw_args is not None and hasattr(raw_args, "__dict__") else {}
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{f}: holds no state dict (found {type(obj).__name__}); not a CGC weights file"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{f}: entry {bad[0]!r} is not a tensor; not a CGC weights file")
    state = {str(k).removeprefix("model."): v for k, v in obj.items()}
    if "gene_encoder.embedding.weight" not in state:
        raise CheckpointError(
            f"{f}: no 'model.gene_encoder.embedding.weight'; not the CGCompass release "
            "(a cgcbench checkpoint is a directory: pass that directory instead)"
        )
    return state, args


def map_official_names(state: Mapping[str, Tensor], where: str = "state dict") -> dict[str, Tensor]:
    """Rename every official parameter to its :class:`OfficialCGC` name.

    Raises
    ------
    CheckpointError
        A name matches no rule of the official ``GeneModel`` (nothing is dropped silently).

    """
    out: dict[str, Tensor] = {}
    for name, value in state.items():
        for pattern, template in _COMPILED:
            m = pattern.match(name)
            if m:
                out[m.expand(template)] = value
                break
        else:
            raise CheckpointError(
                f"{where}: parameter {name!r} is not part of the official GeneModel; the file is not "
                "the CGCompass release, or of a version this loader does not know"
            )
    return out


def official_state_dict(model: OfficialCGC) -> dict[str, Tensor]:
    """The state dict of ``model`` under the official ``ScModel`` names (``model.`` prefix).

    The inverse of :func:`map_official_names`: ``torch.save({"model": official_state_dict(m)},
    path)`` writes a file in the release's layout that :func:`load_official` reads back
    exactly (a fine-tuned or a freshly built official-profile model).

    Raises
    ------
    CheckpointError
        A parameter has no official name (a module the official ``GeneModel`` does not have).

    """
    fast = model.config.fast_transformer
    out: dict[str, Tensor] = {}
    for name, value in model.state_dict().items():
        official = _official_name(name, fast)
        if official == name:
            raise CheckpointError(f"parameter {name!r} has no name in the official GeneModel")
        out[official] = value.detach().clone()
    return out


def _count(state: Mapping[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {m.group(1) for k in state if (m := rx.match(k))}
    return len(found)


def _n_linear(state: Mapping[str, Tensor], prefix: str) -> int:
    return sum(1 for k in state if k.startswith(prefix) and k.endswith(".weight"))


def config_from_state(state: Mapping[str, Tensor], args: Mapping[str, Any] | None = None) -> OfficialConfig:
    """Read the official model's sizes from its (official-named) state dict.

    Raises
    ------
    CheckpointError
        A parameter the sizes are read from is missing.

    """
    args = dict(args or {})

    def need(name: str) -> Tensor:
        if name not in state:
            raise CheckpointError(f"official state dict lacks {name!r}; it is not a complete CGCompass model")
        return state[name]

    ntoken, _ = need("gene_encoder.embedding.weight").shape
    d = int(need("gene_encoder.norm.weight").shape[0])
    use_gnn = any(k.startswith("gnn_encoder.") for k in state)
    layer0 = "gnn_encoder.encoder_layers.0."
    n_dab = state.get("grad_reverse_discriminator.out_layer.weight")
    n_cls = state.get("cls_decoder.out_layer.weight")
    expr0 = state.get("decoder.fc.0.weight")
    return OfficialConfig(
        ntoken=int(ntoken),
        d_model=d,
        nhead=int(args.get("nhead", RELEASE_NHEAD)),
        d_hid=int(need("transformer_encoder.layers.0.linear1.weight").shape[0]),
        nlayers=_count(state, r"transformer_encoder\.layers\.(\d+)\."),
        use_gnn=use_gnn,
        nlayers_gnn=_count(state, r"gnn_encoder\.encoder_layers\.(\d+)\.") if use_gnn else 0,
        n_message=_n_linear(state, layer0 + "conv.message_func."),
        n_edge_layers=_n_linear(state, layer0 + "edge_message_func."),
        n_feedforward=_n_linear(state, layer0 + "ff_func."),
        gnn_layernorm=(layer0 + "norm.0.weight") in state or not use_gnn,
        max_dis=(int(need("edge_encoder.chromo_embedding.0.weight").shape[0]) - 2) // 2 if use_gnn else 50,
        use_embed="gene_summary_encoder.layer.weight" in state,
        text_dim=int(state["gene_summary_encoder.layer.weight"].shape[1])
        if "gene_summary_encoder.layer.weight" in state
        else 768,
        fast_transformer=any(".self_attn.Wqkv." in k for k in state),
        n_domains=_count(state, r"dsbn\.bns\.(\d+)\."),
        n_batch_labels=int(state["batch_encoder.embedding.weight"].shape[0])
        if "batch_encoder.embedding.weight" in state
        else 0,
        expr_decoder=expr0 is not None,
        expr_zero="decoder.zero_logit.0.weight" in state,
        mvc_decoder="mvc_decoder.W.weight" in state,
        mvc_zero="mvc_decoder.W_zero_logit.weight" in state,
        n_cls=0 if n_cls is None else int(n_cls.shape[0]),
        nlayers_cls=_count(state, r"cls_decoder\._decoder\.(\d+)\.") + 1,
        n_dab=0 if n_dab is None else int(n_dab.shape[0]),
        nlayers_dab=_count(state, r"grad_reverse_discriminator\._decoder\.(\d+)\.") + 1,
        batch_in_decoder=expr0 is not None and int(expr0.shape[1]) == 2 * d,
    )


def _reverse_rules() -> list[tuple[re.Pattern[str], str, str]]:
    """``(cgc-name regex, official template, official pattern)`` built from :data:`_RULES`."""
    out = []
    for pattern, template in _RULES:
        groups = re.findall(r"\(([^()]*)\)", pattern)
        parts = re.split(r"(\\\d)", template)
        rx = "".join(
            f"({groups[int(p[1:]) - 1]})" if re.fullmatch(r"\\\d", p) else re.escape(p) for p in parts
        )
        k = iter(range(1, len(groups) + 1))
        official = re.sub(r"\(([^()]*)\)", lambda _m, k=k: f"\\{next(k)}", pattern).replace("\\.", ".")
        out.append((re.compile(rx + r"\Z"), official, pattern))
    return out


def _official_name(cgc_name: str, fast: bool) -> str:
    """The official spelling of an :class:`OfficialCGC` parameter name (for messages)."""
    for rx, official, pattern in _reverse_rules():
        if ("Wqkv" in pattern and not fast) or ("in_proj" in pattern and fast):
            continue
        m = rx.match(cgc_name)
        if m:
            return "model." + m.expand(official)
    return cgc_name


def load_official(path: str | Path, nhead: int | None = None) -> tuple[OfficialCGC, dict[str, Any]]:
    """Build :class:`OfficialCGC` from an official weights file, every parameter loaded.

    Parameters
    ----------
    path
        ``CGCompass_pretrain_weights.pt`` (or a Uni-Core checkpoint of the official code).
    nhead
        Attention heads (default: the checkpoint's ``args.nhead``, else 8).

    Returns
    -------
    model : OfficialCGC
        In eval mode.
    info : dict
        ``config`` (sizes), ``n_parameters``, ``coverage`` (1.0: every official tensor
        loaded) and ``args``.

    Raises
    ------
    CheckpointError
        Unreadable file, an unknown name, or a missing / mis-shaped parameter (named with its
        official spelling).

    """
    state, args = load_official_state(path)
    if nhead is not None:
        args["nhead"] = nhead
    model, info = build_from_official_state(state, args, where=str(path))
    return model, info


def build_from_official_state(
    state: Mapping[str, Tensor], args: Mapping[str, Any] | None = None, where: str = "state dict"
) -> tuple[OfficialCGC, dict[str, Any]]:
    """:func:`load_official` for a state dict already in memory (official names, no prefix)."""
    state = {k.removeprefix("model."): v for k, v in state.items()}
    config = config_from_state(state, args)
    if config.d_model % config.nhead:
        raise CheckpointError(f"{where}: d_model {config.d_model} is not divisible by nhead {config.nhead}")
    mapped = map_official_names(state, where)
    model = OfficialCGC(config)
    own = model.state_dict()
    for name, tensor in own.items():
        if name not in mapped:
            raise CheckpointError(
                f"{where}: lacks parameter {_official_name(name, config.fast_transformer)!r} "
                f"(shape {tuple(tensor.shape)}) of the official GeneModel these weights describe"
            )
        if tuple(mapped[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: parameter {_official_name(name, config.fast_transformer)!r} has shape "
                f"{tuple(mapped[name].shape)}, the official GeneModel of these sizes expects "
                f"{tuple(tensor.shape)}"
            )
    extra = sorted(set(mapped) - set(own))
    if extra:
        raise CheckpointError(f"{where}: parameter {extra[0]!r} does not fit the model its sizes describe")
    model.load_state_dict(mapped, strict=True)
    model.eval()
    info = {
        "config": config.to_dict(),
        "n_parameters": sum(t.numel() for t in state.values()),
        "coverage": 1.0,
        "args": {k: v for k, v in dict(args or {}).items() if isinstance(v, str | int | float | bool)},
    }
    return model, info


# ---------------------------------------------------------------------- prior files
def read_official_vocab(path: str | Path) -> dict[str, int]:
    """Read the official ``vocab.json`` (gene symbol or special token → id).

    Raises
    ------
    InputFileError
        Not a JSON object of string → non-negative integer, ids not unique, or no ``<pad>``.

    """
    f = Path(path)
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{f}: cannot read the CGC vocab.json ({_first_line(exc)})") from exc
    if not isinstance(data, dict) or not data:
        raise InputFileError(f"{f}: expected a JSON object token → id, found {type(data).__name__}")
    bad = [k for k, v in data.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0]
    if bad:
        raise InputFileError(f"{f}: id of {bad[0]!r} is {data[bad[0]]!r}, not a non-negative integer")
    if len(set(data.values())) != len(data):
        raise InputFileError(f"{f}: two tokens share an id; not the CGC vocabulary")
    if "<pad>" not in data:
        raise InputFileError(f"{f}: no '<pad>' token; not the CGC vocabulary")
    return {str(k): int(v) for k, v in data.items()}


_PANDAS_GLOBALS = SERIES_GLOBALS | {
    ("pandas.core.internals.managers", "BlockManager"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}
"""Globals ``embeding.pickle`` (a pandas Series of NumPy arrays) may name; nothing else."""


class _PandasUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, where: str) -> None:
        super().__init__(fh)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PANDAS_GLOBALS:
            raise InputFileError(
                f"{self.where}: refused to unpickle {module}.{name}: the gene text embedding file "
                "must hold only a pandas Series of NumPy arrays (the official embeding.pickle)"
            )
        if module.startswith("numpy"):
            return numpy_global(module, name)
        if module == "pandas.core.indexes.numeric":  # pandas 2 dropped Int64Index
            import pandas as pd

            return pd.Index
        return super().find_class(module, name)


def read_text_embeddings(path: str | Path, n_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read the official gene text embeddings (``embeding.pickle``) without running code.

    Parameters
    ----------
    path
        The pickle: a pandas Series indexed by vocabulary id whose values are 1-d arrays
        (768 wide in the release), as the official dataset reindexes it by token id.
    n_tokens
        Vocabulary size; the table gets this many rows (default: largest id + 1).

    Returns
    -------
    table : numpy.ndarray
        ``[n_tokens, dim]`` float32, zero rows where the Series has no entry.
    present : numpy.ndarray
        ``[n_tokens]`` bool, rows the file provides.

    Raises
    ------
    InputFileError
        Unreadable file, a global outside the pandas/NumPy allow-list, or entries that are not
        equal-width numeric vectors indexed by integer ids.

    """
    f = Path(path)
    try:
        with open(f, "rb") as fh:
            obj = _PandasUnpickler(fh, str(f)).load()
    except InputFileError:
        raise
    except Exception as exc:
        raise InputFileError(f"{f}: cannot read the gene text embeddings ({_first_line(exc)})") from exc
    items: list[tuple[Any, Any]]
    if hasattr(obj, "items") and callable(obj.items):
        items = list(obj.items())
    else:
        raise InputFileError(f"{f}: expected a pandas Series id → vector, found {type(obj).__name__}")
    try:
        ids = np.array([int(k) for k, _ in items], dtype=np.int64)
        vecs = [np.asarray(v, dtype=np.float32).ravel() for _, v in items]
    except (TypeError, ValueError) as exc:
        raise InputFileError(f"{f}: index must be vocabulary ids and values numeric vectors ({exc})") from exc
    widths = {v.shape[0] for v in vecs}
    if len(widths) != 1:
        raise InputFileError(f"{f}: embeddings have different widths {sorted(widths)[:4]}")
    if len(ids) and ids.min() < 0:
        raise InputFileError(f"{f}: negative vocabulary id {int(ids.min())}")
    n = int(n_tokens if n_tokens is not None else (ids.max() + 1 if len(ids) else 0))
    if len(ids) and ids.max() >= n:
        raise InputFileError(f"{f}: id {int(ids.max())} is outside the vocabulary of {n} tokens")
    table = np.zeros((n, widths.pop() if widths else 0), np.float32)
    present = np.zeros(n, bool)
    if len(ids):
        table[ids] = np.stack(vecs)
        present[ids] = True
    return table, present


def is_official_weights(path: str | Path, probe: Callable[[Path], bool] | None = None) -> bool:
    """``True`` if ``path`` is a file (not a cgcbench checkpoint directory) of official weights.

    Only the file type is checked (a PyTorch zip archive); the content is validated by
    :func:`load_official`.
    """
    import zipfile

    f = Path(path)
    if probe is not None:
        return probe(f)
    return f.is_file() and zipfile.is_zipfile(f)
