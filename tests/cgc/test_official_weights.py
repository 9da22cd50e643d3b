"""Official CGCompass weights: every parameter mapped, forward = the official equations.

The official parameter names and shapes below are written from the official source
(epang-ucas/Cell-Graph-Compass ``src/models/gene_model.py``: GeneEncoder, ValueEncoder,
GeneSummaryEncoder, BatchNorm1d ``bn``, EdgeEncoder, GnnEncoder; ``gene_gnn.py``:
GeneConvLayer; FlashTransformerEncoderLayer with FlashMHA ``Wqkv``; ExprDecoder, MVCDecoder)
— not from :mod:`cgc.nn.official` — and the reference forward is computed here step by step
from the raw official tensors.
"""

from __future__ import annotations

import argparse
import math
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cgc.errors import CheckpointError, InputFileError
from cgc.official_weights import (
    build_from_official_state,
    load_official,
    read_official_vocab,
    read_text_embeddings,
)

D, NHEAD, D_HID, NLAYERS, NTOKEN, TEXT, GNN_LAYERS, N_MSG, N_EDGE = 8, 2, 16, 2, 12, 768, 2, 2, 3


def official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every parameter of ScModel(GeneModel) with do_mvg, do_mvc, use_gnn, embed, flash."""
    g = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, ...]] = {
        "gene_encoder.embedding.weight": (NTOKEN, D),
        "gene_encoder.norm.weight": (D,),
        "gene_encoder.norm.bias": (D,),
        "value_encoder.linear1.weight": (D, 1),
        "value_encoder.linear1.bias": (D,),
        "value_encoder.linear2.weight": (D, D),
        "value_encoder.linear2.bias": (D,),
        "value_encoder.norm.weight": (D,),
        "value_encoder.norm.bias": (D,),
        "bn.weight": (D,),
        "bn.bias": (D,),
        "bn.running_mean": (D,),
        "bn.running_var": (D,),
        "edge_encoder.tftg_embedding.0.weight": (2, D),
        "edge_encoder.tftg_embedding.1.weight": (D,),
        "edge_encoder.tftg_embedding.1.bias": (D,),
        "edge_encoder.corr_embedding.0.weight": (D, 1),
        "edge_encoder.corr_embedding.0.bias": (D,),
        "edge_encoder.corr_embedding.2.weight": (D, D),
        "edge_encoder.corr_embedding.2.bias": (D,),
        "edge_encoder.corr_embedding.3.weight": (D,),
        "edge_encoder.corr_embedding.3.bias": (D,),
        "edge_encoder.chromo_embedding.0.weight": (102, D),
        "edge_encoder.chromo_embedding.1.weight": (D,),
        "edge_encoder.chromo_embedding.1.bias": (D,),
        "gene_summary_encoder.layer.weight": (D, TEXT),
        "gene_summary_encoder.layer.bias": (D,),
    }
    for k in range(GNN_LAYERS):
        p = f"gnn_encoder.encoder_layers.{k}."
        for i in range(N_MSG):  # Sequential(Linear, ReLU, Linear …): weights at even indices
            shapes[p + f"conv.message_func.{2 * i}.weight"] = (D, 3 * D if i == 0 else D)
            shapes[p + f"conv.message_func.{2 * i}.bias"] = (D,)
        for i in range(N_EDGE):
            shapes[p + f"edge_message_func.{2 * i}.weight"] = (D, 3 * D if i == 0 else D)
            shapes[p + f"edge_message_func.{2 * i}.bias"] = (D,)
        for j in range(2):
            shapes[p + f"norm.{j}.weight"] = (D,)
            shapes[p + f"norm.{j}.bias"] = (D,)
        shapes[p + "edge_norm.weight"] = (D,)
        shapes[p + "edge_norm.bias"] = (D,)
    for k in range(NLAYERS):
        p = f"transformer_encoder.layers.{k}."
        shapes |= {
            p + "self_attn.Wqkv.weight": (3 * D, D),
            p + "self_attn.Wqkv.bias": (3 * D,),
            p + "self_attn.out_proj.weight": (D, D),
            p + "self_attn.out_proj.bias": (D,),
            p + "linear1.weight": (D_HID, D),
            p + "linear1.bias": (D_HID,),
            p + "linear2.weight": (D, D_HID),
            p + "linear2.bias": (D,),
            p + "norm1.weight": (D,),
            p + "norm1.bias": (D,),
            p + "norm2.weight": (D,),
            p + "norm2.bias": (D,),
        }
    for i in (0, 2, 4):
        shapes[f"decoder.fc.{i}.weight"] = (1 if i == 4 else D, D)
        shapes[f"decoder.fc.{i}.bias"] = (1 if i == 4 else D,)
    shapes |= {
        "mvc_decoder.gene2query.weight": (D, D),
        "mvc_decoder.gene2query.bias": (D,),
        "mvc_decoder.W.weight": (D, D),
    }
    state = {}
    for name, shape in shapes.items():
        t = torch.randn(shape, generator=g) * 0.5
        if name.endswith("running_var"):
            t = t.abs() + 0.5
        state["model." + name] = t
    state["model.bn.num_batches_tracked"] = torch.tensor(1000)
    return state


def _graph() -> dict[str, torch.Tensor]:
    """Two cells, padded to L = 5: cell 0 = <cls> + 4 genes, cell 1 = <cls> + 3 genes + pad."""
    L = 5
    gene = torch.tensor([[1, 4, 5, 6, 7], [1, 5, 8, 9, 0]])
    value = torch.tensor([[0.0, 3.0, 1.0, 50.0, 700.0], [0.0, 2.0, 7.0, 1.0, -2.0]])
    text = torch.randn(2, L, TEXT, generator=torch.Generator().manual_seed(3))
    pad = torch.tensor([[False] * 5, [False] * 4 + [True]])
    # edges (src → dst) within each cell, as graph_generate builds them: gene-gene edges with
    # [tftg, corr, chromo position index], then every gene → <cls> with zero attributes
    cell0 = [(1, 2, 1, 0.8, 0), (2, 3, 0, -0.4, 53), (3, 4, 0, 0.9, 0), (4, 1, 1, 0.0, 47)]
    cell1 = [(1, 2, 1, -0.7, 0), (3, 2, 0, 0.6, 60)]
    edges = []
    for b, cell, n in ((0, cell0, 4), (1, cell1, 3)):
        edges += [(b * L + s, b * L + t, a, c, p) for s, t, a, c, p in cell]
        edges += [(b * L + i, b * L, 0, 0.0, 0) for i in range(1, n + 1)]
    edge_index = torch.tensor([[e[0] for e in edges], [e[1] for e in edges]])
    edge_attr = torch.tensor(
        [[e[2] for e in edges], [e[3] for e in edges], [e[4] for e in edges]], dtype=torch.float32
    )
    return {
        "gene": gene,
        "value": value,
        "text": text,
        "pad": pad,
        "edge_index": edge_index,
        "edge_attr": edge_attr,
    }


def _ln(x, s, name):
    return F.layer_norm(x, (x.shape[-1],), s[name + ".weight"], s[name + ".bias"], 1e-5)


def _lin(x, s, name):
    return x @ s[name + ".weight"].T + s[name + ".bias"]


def _stack(x, s, prefix, n):
    for i in range(n):
        x = _lin(x, s, f"{prefix}.{2 * i}")
        if i < n - 1:
            x = torch.relu(x)
    return x


def official_forward(s: dict[str, torch.Tensor], g: dict[str, torch.Tensor]) -> torch.Tensor:
    """GeneModel._encode in eval mode, written out from the official equations."""
    s = {k.removeprefix("model."): v for k, v in s.items()}
    B, L = g["gene"].shape
    # GeneEncoder: LayerNorm(Embedding)
    tok = _ln(s["gene_encoder.embedding.weight"][g["gene"]], s, "gene_encoder.norm")
    # ValueEncoder: clamp(max=512) → linear1 → ReLU → linear2 → LayerNorm
    v = g["value"].clamp(max=512).unsqueeze(-1)
    val = _ln(
        _lin(torch.relu(_lin(v, s, "value_encoder.linear1")), s, "value_encoder.linear2"),
        s,
        "value_encoder.norm",
    )
    # GeneSummaryEncoder: ReLU(Linear(768 → d))
    summ = torch.relu(_lin(g["text"], s, "gene_summary_encoder.layer"))
    x = tok + val + summ
    # BatchNorm1d (eval, eps 6.1e-5) over the feature dimension
    x = (x - s["bn.running_mean"]) / torch.sqrt(s["bn.running_var"] + 6.1e-5) * s["bn.weight"] + s["bn.bias"]
    # EdgeEncoder
    a = g["edge_attr"]
    e = (
        _ln(s["edge_encoder.tftg_embedding.0.weight"][a[0].long()], s, "edge_encoder.tftg_embedding.1")
        + _ln(
            _lin(
                torch.relu(_lin(a[1].unsqueeze(-1), s, "edge_encoder.corr_embedding.0")),
                s,
                "edge_encoder.corr_embedding.2",
            ),
            s,
            "edge_encoder.corr_embedding.3",
        )
        + _ln(s["edge_encoder.chromo_embedding.0.weight"][a[2].long()], s, "edge_encoder.chromo_embedding.1")
    )
    # GnnEncoder over the flattened nodes
    h = x.reshape(B * L, D)
    src, dst = g["edge_index"]
    for k in range(GNN_LAYERS):
        p = f"gnn_encoder.encoder_layers.{k}"
        # 1. edge update from [x_src, e, x_dst]
        e = _ln(
            e + _stack(torch.cat([h[src], e, h[dst]], -1), s, f"{p}.edge_message_func", N_EDGE),
            s,
            f"{p}.edge_norm",
        )
        # 2. messages [x_j, e', x_i] with j = source, i = target; mean at the target
        new = h.clone()
        for node in range(B * L):
            incoming = [i for i in range(src.numel()) if int(dst[i]) == node]
            if incoming:
                msgs = [
                    _stack(torch.cat([h[src[i]], e[i], h[node]]), s, f"{p}.conv.message_func", N_MSG)
                    for i in incoming
                ]
                agg = torch.stack(msgs).mean(0)
            else:
                agg = torch.zeros(D)
            new[node] = _ln(h[node] + agg, s, f"{p}.norm.0")
        h = new
    x = h.reshape(B, L, D)
    # post-norm Transformer layers, FlashMHA: Wqkv rows = [q; k; v], heads contiguous
    dh = D // NHEAD
    for k in range(NLAYERS):
        p = f"transformer_encoder.layers.{k}"
        qkv = _lin(x, s, f"{p}.self_attn.Wqkv")
        out = torch.zeros(B, L, D)
        for b in range(B):
            for hd in range(NHEAD):
                q = qkv[b, :, hd * dh : (hd + 1) * dh]
                kk = qkv[b, :, D + hd * dh : D + (hd + 1) * dh]
                vv = qkv[b, :, 2 * D + hd * dh : 2 * D + (hd + 1) * dh]
                scores = q @ kk.T / math.sqrt(dh)
                scores[:, g["pad"][b]] = float("-inf")
                out[b, :, hd * dh : (hd + 1) * dh] = torch.softmax(scores, -1) @ vv
        x = _ln(x + _lin(out, s, f"{p}.self_attn.out_proj"), s, f"{p}.norm1")
        x = _ln(x + _lin(torch.relu(_lin(x, s, f"{p}.linear1")), s, f"{p}.linear2"), s, f"{p}.norm2")
    return x


def test_full_official_state_loads_with_full_coverage() -> None:
    state = official_state()
    model, info = build_from_official_state(state, {"nhead": NHEAD})
    assert info["coverage"] == 1.0
    assert sum(t.numel() for t in model.state_dict().values()) == sum(t.numel() for t in state.values())
    assert len(model.state_dict()) == len(state)
    c = info["config"]
    assert (
        c["d_model"],
        c["nlayers"],
        c["nlayers_gnn"],
        c["n_message"],
        c["n_edge_layers"],
        c["max_dis"],
    ) == (D, NLAYERS, GNN_LAYERS, N_MSG, N_EDGE, 50)
    own = model.state_dict()
    assert torch.equal(
        own["transformer.1.qkv.weight"], state["model.transformer_encoder.layers.1.self_attn.Wqkv.weight"]
    )
    assert torch.equal(
        own["gnn.1.edge_msg.4.bias"], state["model.gnn_encoder.encoder_layers.1.edge_message_func.4.bias"]
    )
    assert torch.equal(own["node.bn.running_var"], state["model.bn.running_var"])


def test_official_profile_forward_matches_step_by_step_equations() -> None:
    state = official_state(1)
    model, _ = build_from_official_state(state, {"nhead": NHEAD})
    g = _graph()
    with torch.no_grad():
        ours = model.encode(
            g["gene"],
            g["value"],
            text=g["text"],
            pad=g["pad"],
            edge_index=g["edge_index"],
            edge_attr=g["edge_attr"],
        )
        ref = official_forward(state, g)
        cells = model(
            g["gene"],
            g["value"],
            text=g["text"],
            pad=g["pad"],
            edge_index=g["edge_index"],
            edge_attr=g["edge_attr"],
        )
    real = ~g["pad"]
    torch.testing.assert_close(ours[real], ref[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cells, ref[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (
            lambda s: s.pop("model.gnn_encoder.encoder_layers.1.edge_norm.bias"),
            "model.gnn_encoder.encoder_layers.1.edge_norm.bias",
        ),
        (
            lambda s: s.__setitem__(
                "model.transformer_encoder.layers.0.self_attn.Wqkv.weight", torch.zeros(3 * D, D + 1)
            ),
            "model.transformer_encoder.layers.0.self_attn.Wqkv.weight",
        ),
        (
            lambda s: s.__setitem__(
                "model.gnn_encoder.encoder_layers.0.conv.lin_extra.weight", torch.zeros(D)
            ),
            "gnn_encoder.encoder_layers.0.conv.lin_extra.weight",
        ),
    ],
)
def test_missing_misshaped_or_unknown_key_is_named(mutate, named) -> None:
    state = official_state()
    mutate(state)
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        build_from_official_state(state, {"nhead": NHEAD})


def test_official_files_read_safely(tmp_path: Path) -> None:
    state = official_state()
    ckpt = tmp_path / "checkpoint_best.pt"  # a Uni-Core checkpoint: args Namespace + model
    torch.save(
        {
            "args": argparse.Namespace(nhead=NHEAD, d_model=D, arch="single_cell_model"),
            "model": state,
            "optimizer_history": [{"num_updates": 10}],
        },
        ckpt,
    )
    model, info = load_official(ckpt)
    assert info["args"]["arch"] == "single_cell_model" and info["config"]["nhead"] == NHEAD
    bare = tmp_path / "CGCompass_pretrain_weights.pt"
    torch.save(state, bare)
    model2, _ = load_official(bare, nhead=NHEAD)
    assert torch.equal(model2.state_dict()["node.emb_g.weight"], model.state_dict()["node.emb_g.weight"])

    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(bare.read_bytes()[:3000])
    with pytest.raises(CheckpointError, match="trunc.pt.*truncated"):
        load_official(trunc)

    class Hostile:
        def __reduce__(self):  # pragma: no cover - never executed
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": state, "hook": Hostile()}, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_official(evil)
    assert zipfile.is_zipfile(evil)


def test_prior_file_readers(tmp_path: Path, shared_data: Path) -> None:
    import pandas as pd

    vocab = read_official_vocab(shared_data / "vocab" / "cgc" / "vocab.json")
    assert len(vocab) == 44_859 and {"<pad>", "<cls>", "<eoc>"} <= set(vocab)
    # embeding.pickle: pandas Series of 768-d arrays indexed by vocabulary id
    ser = pd.Series({3: torch.randn(TEXT).numpy(), 7: torch.randn(TEXT).numpy()})
    path = tmp_path / "embeding.pickle"
    ser.to_pickle(path)
    table, present = read_text_embeddings(path, n_tokens=10)
    assert table.shape == (10, TEXT) and present.tolist() == [i in (3, 7) for i in range(10)]
    assert (table[7] == ser[7]).all() and not table[0].any()
    import pickle

    class Hostile:
        def __reduce__(self):  # pragma: no cover - never executed
            return (print, ("pwned",))

    bad = tmp_path / "bad.pickle"
    bad.write_bytes(pickle.dumps(Hostile()))
    with pytest.raises(InputFileError, match="refused to unpickle builtins.print"):
        read_text_embeddings(bad)


def test_official_state_dict_round_trips_through_the_release_layout(tmp_path: Path) -> None:
    """official_state_dict writes every tensor under its official name; load_official reads it back."""
    from cgc.official_weights import official_state_dict

    state = official_state(2)
    model, _ = build_from_official_state(state, {"nhead": NHEAD})
    back = official_state_dict(model)
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    path = tmp_path / "CGCompass_pretrain_weights.pt"
    torch.save({"model": back}, path)  # the Uni-Core layout: torch.load(path)["model"]
    again, info = load_official(path, nhead=NHEAD)
    assert info["coverage"] == 1.0
    g = _graph()
    kw = {k: g[k] for k in ("text", "pad", "edge_index", "edge_attr")}
    with torch.no_grad():
        torch.testing.assert_close(again.encode(g["gene"], g["value"], **kw),
                                   model.encode(g["gene"], g["value"], **kw), rtol=0, atol=0)


def test_official_dropout_acts_in_training_only() -> None:
    """Dropout (official 0.2) changes training forwards; eval forwards stay the official equations."""
    from cgc.official_weights import official_state_dict

    state = official_state(1)
    model, _ = build_from_official_state(state, {"nhead": NHEAD})
    assert model.config.dropout == 0.2
    g = _graph()
    kw = {k: g[k] for k in ("text", "pad", "edge_index", "edge_attr")}
    model.train()
    torch.manual_seed(0)
    a = model.encode(g["gene"], g["value"], **kw)
    torch.manual_seed(1)
    b = model.encode(g["gene"], g["value"], **kw)
    assert (a - b).abs().max() > 1e-3
    # the batch norm trained as the official one does: batch statistics, running ones updated
    assert not torch.allclose(model.node.bn.running_mean, state["model.bn.running_mean"])
    model.eval()
    with torch.no_grad():
        ours = model.encode(g["gene"], g["value"], **kw)
    real = ~g["pad"]
    now = official_state_dict(model)
    torch.testing.assert_close(ours[real], official_forward(now, g)[real], atol=1e-5, rtol=1e-5)


def test_mask_values_follows_random_mask_value() -> None:
    """⌊0.4·n⌋ non-padding gene values per cell become -3; <cls> and padding never do."""
    from cgc.finetune.official import mask_values

    value = torch.tensor([[0.0, 3, 0, 5, 7, 1, 0, 2, 9, 4, 6],
                          [0.0, 1, 2, 3, 0, 5, -2, -2, -2, -2, -2]])
    out = mask_values(value, 0.4, torch.Generator().manual_seed(0))
    masked = out == -3.0
    assert masked.sum(1).tolist() == [4, 2]  # int(10·0.4), int(5·0.4): zeros count, padding does not
    assert not masked[:, 0].any() and (out[1, 6:] == -2.0).all()
    assert torch.equal(out[~masked], value[~masked])
    again = mask_values(value, 0.4, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_exponential_schedule_is_unicore_stair_decay() -> None:
    """warmup_steps + decay='exponential': linear warm-up, then 0.995 ** (update // 100)."""
    from cgc.finetune.train import TrainSettings, _lr_lambda

    f = _lr_lambda(10_000, TrainSettings(warmup_steps=500, decay="exponential"))
    assert f(0) == pytest.approx(1 / 500) and f(249) == pytest.approx(0.5) and f(499) == 1.0
    assert f(500) == pytest.approx(0.995**5) and f(1199) == pytest.approx(0.995**12)
    with pytest.raises(ValueError, match="decay"):
        TrainSettings(decay="linear")
