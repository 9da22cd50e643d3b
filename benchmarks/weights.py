"""Official pretrained releases: where to download them, and what a local copy is.

``cgcbench weights list`` prints :data:`RELEASES`; ``cgcbench weights verify PATH`` runs
:func:`verify` and names the format it found. Nothing is downloaded (hub downloads do not
work on every machine) and nothing is written. Every weight file is read with
``torch.load(weights_only=True)`` or as a safetensors header, never unpickled freely.

sha256 values are listed where the release publishes them or where the file is small and
fixed (the scGPT ``args.json``/``vocab.json`` and the Geneformer V1 dictionaries, as
mirrored in the ``scgpt_vocab`` / ``geneformer_vocab`` cards); the large weight files are
published without a checksum — :func:`verify` prints their sha256 so a user can record it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.errors import InputError


@dataclass(frozen=True)
class Release:
    """One supported official release."""

    name: str
    model: str
    url: str
    files: tuple[str, ...]
    sha256: dict[str, str] = field(default_factory=dict)
    how: str = ""


RELEASES: tuple[Release, ...] = (
    Release(
        "scGPT_human",
        "scgpt",
        "https://drive.google.com/drive/folders/1oWh_-ZRdhtoGQ2Fw24HP41FgLoomVo-y",
        ("args.json", "vocab.json", "best_model.pt"),
        {
            "args.json": "c18e075e018140cb8b2d9029387b9de26607a5ce6a8ccabd6ead70cd76b95d60",
            "vocab.json": "acca93d114ca62c3f0f50debbd23e8c87f0714f4737764454f6b2b13f2e8580f",
        },
        "--model-set scgpt.checkpoint=DIR (the folder with the three files)",
    ),
    Release(
        "Geneformer-V1-10M",
        "geneformer",
        "https://huggingface.co/ctheodoris/Geneformer/tree/main/Geneformer-V1-10M",
        ("config.json", "model.safetensors | pytorch_model.bin"),
        {
            "token_dictionary_gc30M.pkl": "ab9dc40973fa5224d77b793e2fd114cacf3d08423ed9c4c49caf0ba9c7f218f1",
            "gene_median_dictionary_gc30M.pkl": (
                "b3b589bb5ec75040d05fc44dd6bf0184cf87f3c362cf158d196a6ed3b7fe5f39"
            ),
            "gene_name_id_dict_gc30M.pkl": "55e67962e79c0039a6c32d43c5c99f38e51964bbcfa32f736150ee1e285c438c",
        },
        "--model-set geneformer.checkpoint=DIR (V1 dictionaries: the geneformer_vocab card)",
    ),
    Release(
        "Geneformer-V2-104M",
        "geneformer",
        "https://huggingface.co/ctheodoris/Geneformer/tree/main/Geneformer-V2-104M",
        ("config.json", "model.safetensors", "+ geneformer/*_gc104M.pkl dictionaries"),
        {},
        "--model-set geneformer.checkpoint=DIR --model-set geneformer.vocab_dir=DICTS "
        "(or put the *_gc104M.pkl dictionaries into DIR)",
    ),
    Release(
        "CGCompass",
        "cgc",
        "https://drive.google.com/drive/folders/1-0tE2jdodlUio2Wds61FKRE1E2Cd7MXU",
        (
            "pretrain_weights/CGCompass_pretrain_weights.pt",
            "bioFeature_embs/vocab.json",
            "bioFeature_embs/embeding.pickle",
            "bioFeature_embs/tf_tg_graph",
            "bioFeature_embs/chromo_graph",
        ),
        {"bioFeature_embs/vocab.json": "54d24b85f6aa8862b596814fda8b27a9395183882bbfea8506272bc1c3f7b5d3"},
        "--model-set cgc.checkpoint=FILE.pt --model-set cgc.official_text=embeding.pickle "
        "--model-set cgc.official_graphs=bioFeature_embs",
    ),
)

KNOWN_SHA256 = {sha: (r.name, f) for r in RELEASES for f, sha in r.sha256.items()}


@dataclass
class Verification:
    """What :func:`verify` found."""

    path: Path
    format: str
    release: str
    files: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _sha(path: Path) -> str:
    from benchmarks.data.fetch import sha256_file

    return sha256_file(path)


def _known(sha: str) -> str:
    hit = KNOWN_SHA256.get(sha)
    return f"matches {hit[0]} {hit[1]}" if hit else "not a published checksum"


def _verify_scgpt(root: Path) -> Verification:
    from benchmarks.weights_io import load_state_dict

    out = Verification(root, "scGPT release directory", "scGPT")
    for name in ("args.json", "vocab.json", "best_model.pt"):
        if not (root / name).is_file():
            raise InputError(
                f"{root}: scGPT release directory lacks {name}; it needs args.json, vocab.json, best_model.pt"
            )
        out.files[name] = _sha(root / name)
    try:
        args = json.loads((root / "args.json").read_text())
        vocab = json.loads((root / "vocab.json").read_text())
    except ValueError as exc:
        raise InputError(f"{root}: args.json or vocab.json is not valid JSON ({exc})") from exc
    if not isinstance(vocab, dict) or not isinstance(args, dict) or "embsize" not in args:
        raise InputError(f"{root}: args.json lacks embsize or vocab.json is not token → id")
    state = load_state_dict(root / "best_model.pt", "scGPT best_model.pt")
    emb = state.get("encoder.embedding.weight")
    if emb is None:
        raise InputError(f"{root / 'best_model.pt'}: no encoder.embedding.weight; not scGPT weights")
    n_vocab = len(vocab) + sum(t not in vocab for t in ("<pad>", "<cls>", "<eoc>"))
    if tuple(emb.shape) != (n_vocab, int(args["embsize"])):
        raise InputError(
            f"{root}: encoder.embedding.weight is {tuple(emb.shape)} but vocab.json + args.json give "
            f"({n_vocab}, {args['embsize']}); the files do not belong together"
        )
    n_layers = len({k.split(".")[2] for k in state if k.startswith("transformer_encoder.layers.")})
    if n_layers != int(args.get("nlayers", n_layers)):
        raise InputError(f"{root}: best_model.pt has {n_layers} layers, args.json says {args['nlayers']}")
    whole_human = out.files["vocab.json"] == RELEASES[0].sha256["vocab.json"]
    out.release = "scGPT_human" if whole_human else "scGPT (other release)"
    out.checks += [
        f"vocab.json {_known(out.files['vocab.json'])}",
        f"{len(state)} tensors, {n_layers} layers × {args['embsize']}, vocabulary {n_vocab}",
        "flash-attn Wqkv names" if any(".Wqkv." in k for k in state) else "in_proj names",
    ]
    return out


def _verify_geneformer(root: Path) -> Verification:
    from baselines.geneformer_model import GeneformerVocab, model_version
    from benchmarks.weights_io import load_state_dict, safetensors_names

    try:
        config = json.loads((root / "config.json").read_text())
    except ValueError as exc:
        raise InputError(f"{root / 'config.json'}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or "vocab_size" not in config:
        raise InputError(f"{root / 'config.json'}: not a BERT config (no vocab_size)")
    version = model_version(config)
    out = Verification(root, f"Geneformer {version} model directory", f"Geneformer {version}")
    weights = next(
        (root / n for n in ("model.safetensors", "pytorch_model.bin") if (root / n).is_file()), None
    )
    if weights is None:
        raise InputError(f"{root}: no model.safetensors or pytorch_model.bin beside config.json")
    out.files["config.json"] = _sha(root / "config.json")
    out.files[weights.name] = _sha(weights)
    if weights.suffix == ".bin":
        shapes = {k: tuple(v.shape) for k, v in load_state_dict(weights, "pytorch_model.bin").items()}
    else:
        shapes = safetensors_names(weights, "model.safetensors")
    emb = next((s for k, s in shapes.items() if k.endswith("word_embeddings.weight")), None)
    if emb is None or emb[0] != int(config["vocab_size"]):
        raise InputError(
            f"{weights}: word embeddings {emb} do not match config.json vocab_size {config['vocab_size']}"
        )
    out.checks.append(
        f"{len(shapes)} tensors, vocab_size {config['vocab_size']}, input size "
        f"{config.get('max_position_embeddings')}"
    )
    if any(root.glob("*token_dictionary*.pkl")):
        vocab = GeneformerVocab.load(root)
        if vocab.version != version or len(vocab.token) != int(config["vocab_size"]):
            raise InputError(
                f"{root}: {version} model but its dictionaries are {vocab.version} "
                f"({len(vocab.token)} tokens)"
            )
        out.checks.append(f"dictionaries: {vocab.version}, {len(vocab.token)} tokens (match)")
    else:
        out.checks.append(
            "no dictionaries in the folder (V1: the geneformer_vocab card is used; V2: pass vocab_dir=)"
        )
    return out


def _verify_cgc_file(path: Path) -> Verification:
    from cgc.errors import CGCError
    from cgc.official_weights import load_official

    try:
        _, info = load_official(path)
    except CGCError as exc:
        raise InputError(str(exc)) from exc
    out = Verification(path, "CGCompass official weights (Uni-Core state dict)", "CGCompass")
    out.files[path.name] = _sha(path)
    c = info["config"]
    out.checks.append(
        f"every parameter mapped ({info['n_parameters']:,} values): d_model {c['d_model']}, "
        f"{c['nlayers']} Transformer + {c['nlayers_gnn']} graph layers, vocabulary {c['ntoken']}"
    )
    out.details = info
    return out


def _verify_cgc_graph(path: Path) -> Verification:
    from cgc.errors import CGCError
    from cgc.official_graphs import read_official_graph

    try:
        g = read_official_graph(path)
    except CGCError as exc:
        raise InputError(str(exc)) from exc
    out = Verification(path, "CGCompass official prior graph (DGL graph pickle, read without DGL)",
                       "CGCompass", {path.name: g.sha256})
    attrs = ", ".join(f"edge attribute {k!r}" for k in g.edata) or "no edge attributes"
    out.checks.append(f"{g.num_nodes:,} genes, {g.num_edges:,} edges ({g.dgl_state['format']}), {attrs}")
    return out


def _verify_cgc_dir(root: Path) -> Verification:
    from cgc.errors import CGCError
    from cgc.train.checkpoint import resolve_checkpoint, verify_checkpoint

    try:
        ck = resolve_checkpoint(root)
        verify_checkpoint(ck)
    except CGCError as exc:
        raise InputError(str(exc)) from exc
    out = Verification(ck, "cgcbench CGC checkpoint directory", "cgcbench (own pre-training)")
    out.files["model.pt"] = _sha(ck / "model.pt")
    out.checks.append("sha256 manifest matches")
    return out


def verify(path: str | Path) -> Verification:
    """Identify and check a local release file or directory (nothing is written).

    Raises
    ------
    InputError
        Missing path, unknown format, truncated or unsafe file, or files that do not belong
        together (vocabulary vs weights, model vs dictionaries).

    """
    import zipfile

    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p} does not exist; pass a downloaded release file or directory")
    if p.is_dir():
        markers = ("MANIFEST.sha256", "LATEST")
        for d in (p, p / "checkpoints", p / "checkpoint"):
            if any((d / n).exists() for n in markers):  # a cgcbench checkpoint (has config.json too)
                return _verify_cgc_dir(d)
        if (p / "best_model.pt").exists() or (p / "args.json").exists():
            return _verify_scgpt(p)
        if (p / "config.json").exists():
            return _verify_geneformer(p)
        raise InputError(
            f"{p}: not a release directory (no best_model.pt/args.json, config.json or cgcbench manifest)"
        )
    if p.suffix == ".json":
        from cgc.errors import CGCError
        from cgc.official_weights import read_official_vocab

        try:
            vocab = read_official_vocab(p)
        except CGCError as exc:
            raise InputError(str(exc)) from exc
        sha = _sha(p)
        return Verification(
            p,
            "gene vocabulary (token → id JSON)",
            KNOWN_SHA256.get(sha, ("unknown",))[0],
            {p.name: sha},
            [f"{len(vocab)} tokens", _known(sha)],
        )
    if p.name in ("tf_tg_graph", "chromo_graph"):
        return _verify_cgc_graph(p)
    if p.suffix == ".safetensors":
        from benchmarks.weights_io import safetensors_names

        names = safetensors_names(p, "safetensors weights")
        return Verification(
            p,
            "safetensors weights",
            "unknown (pass the model directory)",
            {p.name: _sha(p)},
            [f"{len(names)} tensors"],
        )
    if not zipfile.is_zipfile(p):
        raise InputError(
            f"{p}: not a PyTorch weights archive ({p.stat().st_size:,} bytes): truncated, or a plain pickle "
            "— pickles are not loaded; pass the release's .pt file"
        )
    from benchmarks.weights_io import load_tensor_file, tensors_only

    obj = load_tensor_file(p, "weights file")
    flat = obj.get("model", obj) if isinstance(obj, dict) else obj
    state = tensors_only(flat, p, "weights file")
    if any(k.removeprefix("model.").startswith("gene_encoder.") for k in state):
        return _verify_cgc_file(p)
    if "encoder.embedding.weight" in state:
        return Verification(
            p,
            "scGPT state dict (best_model.pt)",
            "scGPT",
            {p.name: _sha(p)},
            [f"{len(state)} tensors; verify its directory to check args.json/vocab.json"],
        )
    raise InputError(
        f"{p}: a tensor file of no supported release ({len(state)} tensors, e.g. {next(iter(state))!r})"
    )
