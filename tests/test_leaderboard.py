"""The leaderboard builder, on records of real quick annotation runs, and the site in headless Chromium.

The records come from ``cgcbench run annotation --quick`` with the ``majority`` control, the
``pca-logreg`` baseline and a ``pca-logreg:pcs10`` variant (registered for the test run only) on
the PBMC set, seeds 0 and 1, plus the ``random`` control, which cannot annotate and is recorded
as not applicable; every expected value below is recomputed from those records.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from benchmarks.errors import InputError
from benchmarks.leaderboard import build
from benchmarks.leaderboard.ablation import ablations, t_interval
from benchmarks.leaderboard.browser import CHROMIUM_ARGS, chromium_path, missing_requirements
from benchmarks.leaderboard.cli import app as leaderboard_app
from benchmarks.leaderboard.load import deduplicate, load_records, records_from_dir
from benchmarks.leaderboard.markdown import RESULTS_SCHEMA

METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
MODELS = ("majority", "pca-logreg", "pca-logreg:pcs10")
NOT_APPLICABLE = "random"

# Runs the CLI with a test-only variant of pca-logreg (10 principal components instead of 50).
_RUN_WITH_VARIANT = (
    "import sys\n"
    "from baselines.pca_logreg import PCALogRegAdapter\n"
    "PCALogRegAdapter.variants = {'pcs10': {'n_pcs': 10}}\n"
    "from benchmarks.cli import main\n"
    "sys.argv = ['cgcbench', *sys.argv[1:]]\n"
    "main()\n"
)


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A results dir with records of real quick annotation runs (4 models × 2 seeds)."""
    root = tmp_path_factory.mktemp("lb-results")
    env = dict(
        os.environ,
        COLUMNS="200",
        CGCBENCH_MIRRORS=str(shared_data),
        CGCBENCH_DATA_DIR=str(tmp_path_factory.mktemp("lb-cache")),
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [
        "run",
        "annotation",
        "--models",
        ",".join((*MODELS, NOT_APPLICABLE)),
        "--datasets",
        "pbmc68k_reduced",
    ]
    args += ["--seeds", "0,1", "--quick", "--results-dir", str(root / "results")]
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_WITH_VARIANT, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "results"


@pytest.fixture(scope="session")
def raw_records(results_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results_dir / "records").rglob("*.json"))]


@pytest.fixture(scope="session")
def site(results_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lb-site") / "leaderboard"
    build(out, [results_dir])
    return out


def _values(records: list[dict], label: str, metric: str) -> np.ndarray:
    return np.array(
        [
            r["metrics"][metric]
            for r in sorted(records, key=lambda r: r["seed"])
            if r["model"]["label"] == label
        ]
    )


def _cell_text(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


# --- ablation arithmetic ---------------------------------------------------------------------


def test_t_interval_by_hand():
    iv = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, df=2) = 4.302653
    assert iv.mean == pytest.approx(2.0) and iv.n == 3
    assert iv.low == pytest.approx(2.0 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert iv.high == pytest.approx(2.0 + 4.302653 / math.sqrt(3), abs=1e-5)
    one = t_interval([0.5])
    assert one.mean == 0.5 and one.low is None and one.high is None and one.note == "n<2"


# --- records → tables ------------------------------------------------------------------------


def test_records_of_the_real_runs(raw_records):
    assert len(raw_records) == 8
    assert {r["model"]["label"] for r in raw_records if r["status"] == "FINISHED"} == set(MODELS)
    na = [r for r in raw_records if r["model"]["label"] == NOT_APPLICABLE]
    assert len(na) == 2 and {r["status"] for r in na} == {"NOT_APPLICABLE"} and na[0]["reason"]
    variant = next(r for r in raw_records if r["model"]["label"] == "pca-logreg:pcs10")
    assert variant["model"]["name"] == "pca-logreg" and variant["model"]["variant"] == "pcs10"


def test_results_json_matches_records(site, raw_records):
    doc = json.loads((site / "results.json").read_text())
    assert doc["schema"] == RESULTS_SCHEMA and doc["n_records"] == 8
    (suite,) = doc["suites"]
    assert suite["name"] == "annotation" and suite["headline_metrics"] == list(METRICS)
    (dataset,) = suite["datasets"]
    assert dataset["name"] == "pbmc68k_reduced" and len(dataset["sha256"]["pbmc68k_reduced.h5ad"]) == 64
    rows = {row["model"]: row for row in dataset["rows"]}
    assert set(rows) == {*MODELS, NOT_APPLICABLE}
    na = rows[NOT_APPLICABLE]
    assert na["metrics"] == {} and na["statuses"] == {"NOT_APPLICABLE": 2} and na["ranks"] == {}
    assert "annotation" in na["reasons"][0]
    for label in MODELS:
        for metric in METRICS:
            vals = _values(raw_records, label, metric)
            got = rows[label]["metrics"][metric]
            assert got["mean"] == pytest.approx(vals.mean()) and got["n"] == 2
            assert got["sd"] == pytest.approx(vals.std(ddof=1))
    # ranks: only the two non-control models are ranked, in the direction of each metric
    assert rows["majority"]["is_control"] and rows["majority"]["ranks"] == {}
    assert rows["majority"]["overall_rank"] is None
    for metric in METRICS:
        a = _values(raw_records, "pca-logreg", metric).mean()
        b = _values(raw_records, "pca-logreg:pcs10", metric).mean()
        expected = (1.0, 2.0) if a > b else (2.0, 1.0) if a < b else (1.5, 1.5)
        assert (rows["pca-logreg"]["ranks"][metric], rows["pca-logreg:pcs10"]["ranks"][metric]) == expected
        best = {label for label in MODELS if metric in rows[label]["best"]}
        ranked = dict(zip(("pca-logreg", "pca-logreg:pcs10"), expected, strict=True))
        assert best == {m for m, r in ranked.items() if r == min(expected)}
    # score: each metric scaled between the majority control (0) and the true labels (1), averaged
    neg = {m: _values(raw_records, "majority", m).mean() for m in METRICS}
    scores = {}
    for label in ("pca-logreg", "pca-logreg:pcs10"):
        scaled = {m: (_values(raw_records, label, m).mean() - neg[m]) / (1.0 - neg[m]) for m in METRICS}
        assert rows[label]["scaled"] == pytest.approx(scaled)
        scores[label] = np.mean(list(scaled.values()))
        assert rows[label]["score"] == pytest.approx(scores[label])
    assert rows["majority"]["score"] == pytest.approx(0.0)
    better = max(scores, key=scores.get)
    assert rows[better]["overall_rank"] == 1.0 and rows[min(scores, key=scores.get)]["overall_rank"] == 2.0
    assert (
        "could not run" in rows[NOT_APPLICABLE]["unranked"] and rows[NOT_APPLICABLE]["overall_rank"] is None
    )
    # the trivial control scores far below the trained models on accuracy
    assert rows["majority"]["metrics"]["accuracy"]["mean"] < rows["pca-logreg"]["metrics"]["accuracy"]["mean"]
    prov = rows["pca-logreg"]["provenance"]
    assert prov["seeds"] == [0, 1] and prov["init"] == "scratch" and prov["packages"]["scanpy"]
    assert prov["peak_rss_mb"] > 0 and prov["wall_time_s"][0] > 0 and prov["git_commits"]


def test_ablation_variant_against_base(site, raw_records):
    doc = json.loads((site / "results.json").read_text())
    abl = {a["metric"]: a for a in doc["suites"][0]["datasets"][0]["ablations"]}
    assert set(abl) == set(METRICS)
    for metric in METRICS:
        diffs = _values(raw_records, "pca-logreg:pcs10", metric) - _values(raw_records, "pca-logreg", metric)
        a = abl[metric]
        assert a["base"] == "pca-logreg" and a["variant"] == "pca-logreg:pcs10" and a["seeds"] == [0, 1]
        assert a["diff"]["mean"] == pytest.approx(diffs.mean()) and a["diff"]["n"] == 2
        half = stats.t.ppf(0.975, 1) * diffs.std(ddof=1) / math.sqrt(2)
        assert a["diff"]["low"] == pytest.approx(diffs.mean() - half)
        assert a["diff"]["high"] == pytest.approx(diffs.mean() + half)
    # the same module, called directly on one seed, cannot give an interval
    one_seed = [r for r in raw_records if r["seed"] == 0 and r["status"] == "FINISHED"]
    (res, *_) = ablations(one_seed, {"annotation": ["accuracy"]})
    assert res.diff.n == 1 and res.interval_text() == "n<2"


def test_markdown_tables(site, raw_records):
    md = (site / "README.md").read_text()
    assert "not the published models' numbers" in md and "cgcbench leaderboard build" in md
    assert "| model | init | seeds | accuracy ↑ |" in md
    acc = _cell_text(_values(raw_records, "majority", "accuracy"))
    assert any(line.startswith("| *majority (control)* | none | 0,1 | " + acc) for line in md.splitlines())
    na_line = next(line for line in md.splitlines() if line.startswith(f"| *{NOT_APPLICABLE} (control)*"))
    assert "n/a" in na_line and "not_applicable×2 — annotation needs task kind annotation" in na_line
    assert "Ablations (variant − base" and "| pca-logreg:pcs10 | pca-logreg | accuracy | 2 |" in md


def test_site_is_self_contained(site):
    pages = sorted(site.glob("*.html"))
    assert [p.name for p in pages] == ["definitions.html", "index.html", "suite-annotation.html"]
    for page in pages:
        text = page.read_text()
        # nothing is fetched: no remote src/action/stylesheet; only citation links (<a href>) go out
        assert not re.search(
            r"(src|action)=\"?(https?:)?//|<link[^>]+href=\"?(https?:)?//|url\(|@import", text
        )
        assert len(re.findall(r"href=\"https?://", text)) == len(re.findall(r"<a href=\"https?://", text))
        assert 'src="/' not in text and 'href="/' not in text  # relative links only
    images = list((site / "assets").rglob("*.png"))
    # one run per model is shown: confusion matrices for all three, UMAPs for the two pca-logreg
    assert len(images) == 5
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert total < 5e6


def test_duplicates_and_superseded(results_dir):
    report = load_records([results_dir, results_dir])
    assert len(report.records) == 8 and report.duplicates == 8 and report.superseded == []
    recs = records_from_dir(results_dir)
    clone = type(recs[0])(dict(recs[0].data, record_id=recs[0].record_id + "-rerun"), "x", recs[0].resolve)
    clone.data["provenance"] = dict(
        clone.data["provenance"], ended_at_ms=clone.data["provenance"]["ended_at_ms"] + 1
    )
    kept, dups, superseded = deduplicate([*recs, clone])
    assert dups == 0 and superseded == [recs[0].record_id] and clone in kept and len(kept) == 8


def test_build_from_mlflow_matches_records_dir(results_dir, site, tmp_path):
    out = tmp_path / "from-mlflow"
    result = build(out, tracking_uris=[f"sqlite:///{results_dir}/mlflow.db"])
    assert len(result.load.records) == 8
    a = json.loads((out / "results.json").read_text())["suites"]
    b = json.loads((site / "results.json").read_text())["suites"]
    rows_a = {r["model"]: r["metrics"] for r in a[0]["datasets"][0]["rows"]}
    rows_b = {r["model"]: r["metrics"] for r in b[0]["datasets"][0]["rows"]}
    assert rows_a.keys() == rows_b.keys()
    for label in rows_a:
        assert rows_a[label].keys() == rows_b[label].keys()
        for metric in rows_a[label]:
            assert rows_a[label][metric]["mean"] == pytest.approx(rows_b[label][metric]["mean"])
    assert len(list((out / "assets").rglob("*.png"))) == 5  # plots downloaded from the MLflow runs


def test_cli_build_and_errors(results_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "lb"
    res = runner.invoke(leaderboard_app, ["build", "--records", str(results_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "index.html").is_file() and (out / "results.json").is_file()
    res = runner.invoke(leaderboard_app, ["build", "--records", str(tmp_path / "nope"), "--out", str(out)])
    assert isinstance(res.exception, InputError) and "no such directory" in str(res.exception)
    with pytest.raises(InputError, match="pass --records"):
        load_records([], [])


# --- the site in a real browser ---------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    reason = missing_requirements()
    if reason:
        pytest.skip(f"headless browser test needs Chromium and Playwright: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium_path()), args=list(CHROMIUM_ARGS))
        yield b
        b.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: None if r.url.startswith("file://") else problems.append(f"request {r.url}"))
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, problems


def _board_rows(page) -> list[str]:
    return page.eval_on_selector_all(
        "#board-annotation tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.model)"
    )


def test_overview_in_headless_chromium(browser, site, raw_records, tmp_path):
    page, problems = _open(browser, site / "index.html")
    disclaimer = " ".join(page.inner_text("#disclaimer").split())
    assert "not the published models' numbers" in disclaimer
    # every fixture record ran with --quick, and the banner counts the rows that did
    assert f"{len(_board_rows(page))} of {len(_board_rows(page))} rows with --quick settings" in disclaimer
    # rows: the two ranked models by overall rank, then the controls
    rows = _board_rows(page)
    assert sorted(rows[:2]) == ["pca-logreg", "pca-logreg:pcs10"] and rows[2:] == ["majority", NOT_APPLICABLE]
    for label in MODELS:
        cell = f'#board-annotation tr[data-model="{label}"] td[data-metric="accuracy"]'
        vals = _values(raw_records, label, "accuracy")
        assert page.inner_text(f"{cell} .val") == f"{vals.mean():.3f}"
        assert page.inner_text(f"{cell} .sd") == f"±{vals.std(ddof=1):.3f}"
    assert page.get_attribute('#board-annotation tr[data-model="majority"]', "class") == "control"
    best = page.eval_on_selector_all("#board-annotation td.best[data-metric='f1_macro']", "c => c.length")
    assert best >= 1
    # a not-applicable row says why, across its metric columns, and is not ranked
    na_row = f'#board-annotation tr[data-model="{NOT_APPLICABLE}"]'
    why = page.inner_text(f"{na_row} td.why")
    assert why.startswith("control (unranked); could not run: annotation needs task kind annotation")
    assert page.inner_text(f"{na_row} td.overall") == "control"
    # its status and provenance open below it
    prov = f"#prov-{page.get_attribute(na_row, 'data-id')}"
    assert page.is_hidden(prov)
    page.click(f"{na_row} button.toggle")
    assert page.is_visible(prov)
    assert "not applicable ×2" in page.inner_text(prov) and "git commit" in page.inner_text(prov)
    page.click(f"{na_row} button.toggle")
    assert page.is_hidden(prov)

    # sorting: first click puts the best accuracy first, the second click reverses
    header = '#board-annotation th[data-metric="accuracy"]'
    page.click(header)
    accs = {label: _values(raw_records, label, "accuracy").mean() for label in MODELS}
    assert page.get_attribute(header, "aria-sort") == "descending"
    order = _board_rows(page)  # rows without a value stay last in both directions
    assert [accs[m] for m in order[:3]] == sorted(accs.values(), reverse=True) and order[3] == NOT_APPLICABLE
    page.click(header)
    order = _board_rows(page)
    assert [accs[m] for m in order[:3]] == sorted(accs.values()) and order[3] == NOT_APPLICABLE
    page.click('#board-annotation th:has-text("model")')
    assert _board_rows(page) == sorted((*MODELS, NOT_APPLICABLE))

    # filtering: by model, by init, then reset
    page.select_option("#filter-model", "majority")
    assert _board_rows(page) == ["majority"]
    assert page.inner_text("#shown-count") == "1 row shown"
    page.select_option("#filter-model", "")
    page.select_option("#filter-init", "scratch")
    assert sorted(_board_rows(page)) == ["pca-logreg", "pca-logreg:pcs10"]
    page.select_option("#filter-suite", "annotation")
    assert page.is_visible("#suite-annotation")
    page.click("#reset-filters")
    assert len(_board_rows(page)) == 4

    shot = page.screenshot(path=str(tmp_path / "overview.png"))
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert problems == []
    page.close()


def test_suite_page_in_headless_chromium(browser, site):
    page, problems = _open(browser, site / "suite-annotation.html")
    images = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
    )
    assert len(images) == 5 and all(ok for _, ok in images), images
    assert page.eval_on_selector_all("svg.chart", "s => s.length") == len(METRICS)
    ablation_rows = page.eval_on_selector_all("table.ablation tbody tr", "r => r.length")
    assert ablation_rows == len(METRICS)
    runs = page.eval_on_selector_all("table.runs tbody tr", "r => r.length")
    assert runs == 8
    page.select_option("#filter-model", "majority")
    visible_figs = page.eval_on_selector_all("figure", "f => f.filter(x => !x.hidden).length")
    assert visible_figs == 1  # the majority control's confusion matrix
    assert problems == []
    page.close()


# --- configurations are never mixed (issue 20) ----------------------------------------------------

PUBLISHED = Path(__file__).resolve().parents[1] / "leaderboard" / "results"


def test_quick_and_full_records_are_different_rows(results_dir, tmp_path):
    """A --quick record and a full-setting record of the same (suite, dataset, model, seed)."""
    quick_path = next(
        p for p in sorted((results_dir / "records").rglob("*.json")) if "/pca-logreg/seed0-" in p.as_posix()
    )
    full_path = sorted(
        (PUBLISHED / "records" / "annotation" / "pbmc68k_reduced" / "pca-logreg").glob("seed0-*")
    )[0]
    quick, full = json.loads(quick_path.read_text()), json.loads(full_path.read_text())
    assert quick["config"]["suite_config"]["quick"] and not full["config"]["suite_config"]["quick"]
    assert quick["record_id"] != full["record_id"] and quick["seed"] == full["seed"] == 0
    mixed = tmp_path / "mixed" / "records"
    mixed.mkdir(parents=True)
    for path in (quick_path, full_path):
        (mixed / path.name).write_text(path.read_text())
    report = load_records([tmp_path / "mixed"])
    assert len(report.records) == 2 and report.superseded == []  # neither replaces the other
    build(tmp_path / "site", [tmp_path / "mixed"])
    doc = json.loads((tmp_path / "site" / "results.json").read_text())
    rows = {r["display"]: r for r in doc["suites"][0]["datasets"][0]["rows"]}
    assert set(rows) == {"pca-logreg [quick]", "pca-logreg [full]"}
    for tag, rec in (("quick", quick), ("full", full)):
        row = rows[f"pca-logreg [{tag}]"]
        assert row["seeds"] == [0] and row["provenance"]["record_ids"] == [rec["record_id"]]
        for metric in METRICS:  # each row holds its own record's value, never an average of both
            assert (
                row["metrics"][metric]["mean"] == rec["metrics"][metric] and row["metrics"][metric]["n"] == 1
            )
    assert rows["pca-logreg [quick]"]["config_hash"] != rows["pca-logreg [full]"]["config_hash"]
    html = (tmp_path / "site" / "index.html").read_text()
    assert html.count('data-model="pca-logreg"') == 2 and "[quick]" in html and "[full]" in html


# --- the published records, in a real browser at 1,400 px ------------------------------------------


@pytest.fixture(scope="module")
def published_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lb-published") / "site"
    build(out, [PUBLISHED])
    return out


def test_published_site_in_headless_chromium(browser, published_site):
    doc = json.loads((published_site / "results.json").read_text())
    suites = [s["name"] for s in doc["suites"]]
    pages = ["index.html", "definitions.html", *(f"suite-{s}.html" for s in suites)]
    for name in pages:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda e, problems=problems: problems.append(str(e)))
        page.goto((published_site / name).resolve().as_uri())
        page.wait_for_load_state("load")
        # no table (nor the page) is wider than the window, with every provenance row open
        page.eval_on_selector_all("button.toggle", "bs => bs.forEach(b => b.click())")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400, name
        wide = page.eval_on_selector_all(
            "table",
            "ts => ts.filter(t => t.getBoundingClientRect().right > 1400"
            " || (t.parentElement.scrollWidth > t.parentElement.clientWidth + 1)).map(t => t.id)",
        )
        assert wide == [], (name, wide)
        assert "Mixed provenance" in page.inner_text("#provenance-banner")
        assert problems == [], problems
        if name == "index.html":
            box = page.eval_on_selector("#summary-figure", "s => s.getBoundingClientRect().toJSON()")
            assert box["width"] > 400 and box["height"] > 100
            cells = page.eval_on_selector_all("#summary-figure rect.hm-cell", "r => r.length")
            scored = {
                (r["display"], s["name"])
                for s in doc["suites"]
                for d in s["datasets"]
                for r in d["rows"]
                if r["score"] is not None and d["name"] != "norman_subset"
            }
            assert cells == len(scored) > 0
        if name == "definitions.html":
            defs = page.eval_on_selector_all(
                "table.metric-defs tbody tr",
                "rs => rs.map(r => [r.closest('table').dataset.suite, r.dataset.metric,"
                " r.querySelector('td.definition').innerText, r.querySelector('td a') ? 1 : 0])",
            )
            for s in doc["suites"]:
                names = [m["name"] for m in s["metric_definitions"]]
                assert [d[1] for d in defs if d[0] == s["name"]] == names
            assert all(len(d[2]) > 30 for d in defs)
            cards = page.inner_text("#dataset-cards")
            assert "68k PBMC (reduced), labelled" in cards and "BSD-3-Clause" in cards
            assert "Zheng et al. 2017" in cards
            assert "scvi-tools" in page.inner_text('#method-cards tr[data-model="scvi"]')
            assert "text_model: all-MiniLM-L6-v2" in page.inner_text('#method-cards tr[data-model="biobert"]')
        if name.startswith("suite-"):
            descs = page.eval_on_selector_all(
                ".dataset-card .card-description", "d => d.map(x => x.innerText)"
            )
            assert len(descs) == len(
                next(s for s in doc["suites"] if f"suite-{s['name']}.html" == name)["datasets"]
            )
            assert all(len(d) > 40 for d in descs)
        page.close()
