"""``cgcbench ablate``: the model list, the paired comparison and the command's output."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

import benchmarks.ablate as ablate
from benchmarks.errors import InputError


def _record(label: str, seed: int, nmi: float) -> dict:
    name, _, variant = label.partition(":")
    return {"status": "FINISHED", "suite": "clustering", "seed": seed, "dataset": {"name": "d"},
            "model": {"name": name, "variant": variant, "label": label}, "metrics": {"nmi": nmi}}


def test_ablation_models_lists_base_and_all_paper_variants() -> None:
    models = ablate.ablation_models("cgc")
    assert models[0] == "cgc"
    assert set(models[1:]) == {f"cgc:{v}" for v in ablate.DEFAULT_VARIANTS}
    assert ablate.ablation_models("cgc", ["no-graph"]) == ["cgc", "cgc:no-graph"]
    with pytest.raises(InputError, match="not variants of cgc"):
        ablate.ablation_models("cgc", ["no-such"])
    with pytest.raises(InputError, match="without a variant"):
        ablate.ablation_models("cgc:no-graph")


def test_compare_gives_paired_differences_with_t_intervals() -> None:
    records = [_record("cgc", s, v) for s, v in enumerate([0.5, 0.6, 0.7])]
    records += [_record("cgc:no-graph", s, v) for s, v in enumerate([0.4, 0.45, 0.6])]
    (res,) = [r for r in ablate.compare(records, "clustering") if r.metric == "nmi"]
    assert res.variant == "cgc:no-graph" and res.diff.n == 3
    assert res.diff.mean == pytest.approx(-0.35 / 3)  # (-0.1 - 0.15 - 0.1) / 3
    # t-interval by hand: sd of (-0.1, -0.15, -0.1) = 0.028868, t(0.975, 2) = 4.302653
    half = 4.302653 * 0.0288675 / 3**0.5
    assert res.diff.low == pytest.approx(res.diff.mean - half, rel=1e-4)
    assert res.diff.high == pytest.approx(res.diff.mean + half, rel=1e-4)
    assert res.improves is False  # the interval excludes 0 and NMI is higher-is-better


def test_ablate_command_prints_table(monkeypatch, tmp_path) -> None:
    records = [_record("cgc", s, 0.5 + s / 10) for s in range(3)]
    records += [_record("cgc:no-graph", s, 0.4 + s / 10) for s in range(3)]
    seen = {}

    def fake_run(suite, datasets, seeds, base, variants, **kw):
        seen.update(suite=suite, datasets=datasets, seeds=seeds, variants=variants, params=kw["model_params"])
        return records, ablate.compare(records, suite)

    monkeypatch.setattr(ablate, "run_ablation", fake_run)
    app = typer.Typer()
    app.command("ablate")(ablate.ablate_command)
    app.command("other")(lambda: None)  # keep "ablate" a sub-command
    out = tmp_path / "abl.json"
    res = CliRunner().invoke(app, ["ablate", "clustering", "--datasets", "d", "--seeds", "0,1,2",
                                   "--variants", "no-graph", "--model-set", "cgc.pretrain_steps=5",
                                   "--json", str(out)], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert seen == {"suite": "clustering", "datasets": ["d"], "seeds": [0, 1, 2], "variants": ["no-graph"],
                    "params": {"cgc": {"pretrain_steps": 5}}}
    assert "cgc:no-graph" in res.output and "-0.1000" in res.output
    assert out.is_file()


def test_run_ablation_needs_two_seeds(tmp_path) -> None:
    with pytest.raises(InputError, match="at least two seeds"):
        ablate.run_ablation("clustering", ["sergio_batches"], [0], results_dir=tmp_path)


def test_zero_shot_suites_give_each_seed_its_own_pretraining() -> None:
    # gene classification and GRN score pre-trained weights as they are: seeds must reach pre-training
    for suite in ("gene-classification", "grn"):
        params, added = ablate.zero_shot_params(suite, "cgc", {})
        assert added == {"pretrain_seed": "run"} and params == {"cgc": {"pretrain_seed": "run"}}
    # a user's own setting wins, and other settings are kept
    params, added = ablate.zero_shot_params("grn", "cgc", {"cgc": {"pretrain_seed": 4, "pretrain_steps": 5}})
    assert added == {} and params == {"cgc": {"pretrain_seed": 4, "pretrain_steps": 5}}
    # suites that fine-tune keep one shared checkpoint (seeds vary the fine-tuning)
    for suite in ("clustering", "annotation", "perturbation", "bulk-knockout"):
        assert ablate.zero_shot_params(suite, "cgc", {}) == ({}, {})
