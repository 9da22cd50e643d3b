"""Control-scaled ranks, configuration-pure rows and clean provenance (issue 20).

Records are copies of the published GRN and annotation records in ``leaderboard/results``
(real records of real runs) with their model, seed and metrics set for each case; the expected
ranks and scaled scores are worked out by hand below.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.errors import InputError
from benchmarks.leaderboard import build
from benchmarks.leaderboard.aggregate import build_boards, suite_meta
from benchmarks.leaderboard.configs import config_tags, row_config_hash
from benchmarks.leaderboard.definitions import METRICS, REFERENCES
from benchmarks.leaderboard.scaling import reference_scale
from benchmarks.registry import suite_class, suite_names

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "leaderboard" / "results" / "records"
GRN_BASE = PUBLISHED / "grn" / "beeline_string_hesc_tfs500" / "random"
ANNOTATION_BASE = PUBLISHED / "annotation" / "pbmc68k_reduced" / "majority"
CLUSTERING_BASE = PUBLISHED / "clustering" / "sergio_batches" / "pca"

# Toy GRN board: (epr, auprc_ratio, coverage) per model; random is the negative control,
# coexpression the positive one.
TOY = {
    "random": (1.0, 1.0, 1.0),
    "coexpression": (3.0, 2.0, 0.5),
    "model-a": (2.0, 2.5, 0.1),  # scaled epr 0.5, auprc 1.5 -> score 1.00
    "model-b": (4.0, 1.2, 0.2),  # scaled epr 1.5, auprc 0.2 -> score 0.85
    "model-c": (2.2, 1.8, 1.0),  # scaled epr 0.6, auprc 0.8 -> score 0.70
}
CONTROLS = {"random", "coexpression"}


def _base(folder: Path) -> dict:
    return json.loads(sorted(folder.glob("seed0-*.json"))[0].read_text())


def _record(base: dict, label: str, seed: int, metrics: dict, *, is_control: bool = False) -> dict:
    rec = copy.deepcopy(base)
    rec["model"] = {**rec["model"], "label": label, "name": label, "variant": "", "is_control": is_control}
    rec["config"] = {**rec["config"], "model": label, "seed": seed}
    rec["seed"] = seed
    rec["metrics"] = metrics
    rec["status"] = "FINISHED"
    rec["reason"] = None
    rec["record_id"] = f"{rec['suite']}/{rec['dataset']['name']}/{label}/seed{seed}-{row_config_hash(rec)}"
    return rec


def _toy_records(coverage: dict[str, float] | None = None) -> list[dict]:
    base = _base(GRN_BASE)
    out = []
    for label, (epr, auprc, cov) in TOY.items():
        cov = (coverage or {}).get(label, cov)
        for seed, delta in ((0, -0.1), (1, 0.1)):  # two seeds whose mean is the value above
            metrics = {"epr": epr + delta, "auprc_ratio": auprc - delta, "coverage": cov}
            out.append(_record(base, label, seed, metrics, is_control=label in CONTROLS))
    return out


def _rows(records: list[dict]) -> dict[str, object]:
    (board,) = build_boards(records)
    (dataset,) = board.datasets
    return {row.display: row for row in dataset.rows}


def test_scaled_ranks_by_hand():
    rows = _rows(_toy_records())
    expected = {"model-a": (0.5, 1.5, 1.0), "model-b": (1.5, 0.2, 0.85), "model-c": (0.6, 0.8, 0.7)}
    for label, (epr, auprc, score) in expected.items():
        assert rows[label].scaled == pytest.approx({"epr": epr, "auprc_ratio": auprc})
        assert rows[label].score == pytest.approx(score)
    assert {k: rows[k].overall_rank for k in expected} == {"model-a": 1.0, "model-b": 2.0, "model-c": 3.0}
    # per-metric ranks are on the raw means; the mean of these ranks ties all three models (2, 2, 2),
    # which is what the old builder ranked on — scaling breaks the tie by the size of the gains
    assert {k: rows[k].ranks for k in expected} == {
        "model-a": {"epr": 3.0, "auprc_ratio": 1.0},
        "model-b": {"epr": 1.0, "auprc_ratio": 3.0},
        "model-c": {"epr": 2.0, "auprc_ratio": 2.0},
    }
    assert rows["random"].score == pytest.approx(0.0) and rows["coexpression"].score == pytest.approx(1.0)
    assert rows["random"].overall_rank is None and rows["random"].unranked == "control (unranked)"
    assert all("coverage" not in rows[k].ranks for k in rows)


def test_coverage_never_changes_a_rank():
    reference = _rows(_toy_records())
    for coverage in ({"model-c": 0.0, "model-a": 1.0}, {"model-a": 0.0, "model-b": 0.0, "model-c": 0.0}):
        rows = _rows(_toy_records(coverage))
        for label in ("model-a", "model-b", "model-c"):
            assert rows[label].overall_rank == reference[label].overall_rank
            assert rows[label].ranks == reference[label].ranks
            assert rows[label].score == pytest.approx(reference[label].score)
        assert rows["model-c"].summary.metrics["coverage"][0] == coverage.get("model-c", 1.0)


def test_a_model_that_could_not_run_is_not_ranked_and_says_why():
    records = _toy_records()
    for rec in records:
        if rec["model"]["label"] == "model-b":
            rec.update(status="NOT_APPLICABLE", metrics={}, reason="the model embeds no gene of this network")
        if rec["model"]["label"] == "model-c":
            del rec["metrics"]["auprc_ratio"]
    rows = _rows(records)
    assert rows["model-b"].overall_rank is None and rows["model-b"].ranks == {}
    assert rows["model-b"].unranked == "could not run: the model embeds no gene of this network"
    assert rows["model-c"].overall_rank is None and rows["model-c"].unranked == "no value for auprc_ratio"
    assert rows["model-a"].overall_rank == 1.0


def test_no_scaling_without_both_controls():
    records = [r for r in _toy_records() if r["model"]["label"] != "coexpression"]
    rows = _rows(records)
    assert all(rows[k].overall_rank is None and rows[k].score is None for k in ("model-a", "model-b"))
    assert "no control reference" in rows["model-a"].unranked and "coexpression" in rows["model-a"].unranked
    assert rows["model-a"].ranks == {"epr": 3.0, "auprc_ratio": 1.0}  # per-metric ranks stay


def test_reference_scale_directions():
    up = reference_scale([0.2], [0.6], higher_is_better=True)
    assert up is not None and up(0.4) == pytest.approx(0.5) and up(0.2) == 0.0 and up(0.6) == 1.0
    down = reference_scale([5.0], [4.0], higher_is_better=False)  # an MSE: lower is better
    assert down is not None and down(4.5) == pytest.approx(0.5) and down(3.0) == pytest.approx(2.0)
    swapped = reference_scale([0.9], [0.3], higher_is_better=True)  # positive control worse
    assert swapped is not None and swapped.swapped and swapped(0.9) == 1.0 and swapped(0.3) == 0.0
    assert reference_scale([], [1.0], True) is None and reference_scale([0.5], [0.5], True) is None


def test_every_suite_metric_is_declared():
    for name in suite_names():
        cls = suite_class(name)
        declared = {m.name: m for m in METRICS[name]}
        for metric in cls.headline_metrics:
            assert metric in declared, f"{name}.{metric} has no definition"
            assert declared[metric].higher_is_better == cls.higher_is_better.get(metric, True)
            assert declared[metric].definition and declared[metric].source
        assert name in REFERENCES
        assert not any(m.ranked for m in METRICS[name] if "coverage" in m.name)
    clustering = suite_meta("clustering")
    assert {"asw_label", "overall", "scib_overall"} <= set(clustering.headline_metrics)
    assert not clustering.is_ranked("overall") and not clustering.is_ranked("scib_overall")


def test_config_tags():
    quick = {"suite_config": {"quick": True, "suite": "annotation"}, "model": "m", "model_params": {}}
    full = {**quick, "suite_config": {"quick": False, "suite": "annotation"}}
    params = {**full, "model_params": {"n_pcs": 10}}
    assert config_tags([quick]) == [""]
    assert config_tags([quick, full]) == ["quick", "full"]
    assert config_tags([full, params]) == ["model_params.n_pcs=∅", "model_params.n_pcs=10"]


# --- clean provenance ----------------------------------------------------------------------------


def _write(results: Path, rec: dict) -> Path:
    path = results / "records" / f"{rec['record_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


@pytest.fixture()
def clean_results(tmp_path: Path) -> Path:
    """The published majority records of annotation: one clean commit."""
    results = tmp_path / "results"
    for src in sorted(ANNOTATION_BASE.glob("*.json")):
        rec = json.loads(src.read_text())
        assert rec["provenance"]["git"]["dirty"] is False
        _write(results, rec)
    return results


def test_publish_accepts_one_clean_commit(clean_results, tmp_path):
    result = build(tmp_path / "site", [clean_results], publish=True)
    assert result.provenance.clean and result.provenance.commit
    assert f"one clean commit, {result.provenance.commit}" in (tmp_path / "site" / "index.html").read_text()


def test_publish_refuses_a_dirty_record(clean_results, tmp_path):
    rec = json.loads(sorted(ANNOTATION_BASE.glob("seed0-*.json"))[0].read_text())
    rec["provenance"]["git"]["dirty"] = True  # a fourth seed, run from a dirty tree
    rec["seed"] = rec["config"]["seed"] = 3
    rec["record_id"] = rec["record_id"].replace("/seed0-", "/seed3-")
    dirty = _write(clean_results, rec)
    out = tmp_path / "site"
    with pytest.raises(InputError, match="uncommitted changes") as err:
        build(out, [clean_results], publish=True)
    assert str(dirty) in str(err.value) and not out.exists()  # refused before writing anything
    # the CLI exits 2 and names the file
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="400")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "leaderboard", "build", "--records", str(clean_results)]
        + ["--out", str(out), "--publish"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert dirty.name in " ".join((proc.stdout + proc.stderr).split()) and not out.exists()
    # --allow-mixed builds, and every page's banner says so
    result = build(out, [clean_results], publish=True, allow_mixed=True)
    assert not result.provenance.clean
    for page in ("index.html", "definitions.html", "suite-annotation.html"):
        text = " ".join((out / page).read_text().split())
        assert "Mixed provenance: 1 of 4 records made from a working tree with uncommitted changes" in text
        assert "Published anyway with --allow-mixed" in text
    doc = json.loads((out / "results.json").read_text())
    assert doc["provenance"]["n_dirty"] == 1 and doc["provenance"]["allow_mixed"] is True
    assert "Mixed provenance" in (out / "README.md").read_text()


def test_publish_refuses_records_of_two_commits(clean_results, tmp_path):
    other = json.loads(sorted(CLUSTERING_BASE.glob("seed0-*.json"))[0].read_text())  # another clean commit
    other_path = _write(clean_results, other)
    with pytest.raises(InputError, match="records come from 2 commits") as err:
        build(tmp_path / "site", [clean_results], publish=True)
    assert other_path.name in str(err.value)
    # without --publish the build goes ahead and the banner says it is a local build
    result = build(tmp_path / "site", [clean_results])
    assert not result.provenance.clean
    assert "A local build, not a publishable one" in (tmp_path / "site" / "index.html").read_text()


def test_row_config_ignores_the_seed_and_odd_configs():
    base = _base(GRN_BASE)
    other_seed = _record(base, "random", 1, {}, is_control=True)
    same_seed0 = _record(base, "random", 0, {}, is_control=True)
    assert row_config_hash(other_seed) == row_config_hash(same_seed0)
    assert other_seed["config"]["seed"] != same_seed0["config"]["seed"]
    assert row_config_hash({"config": "not a mapping"}) == row_config_hash({})
