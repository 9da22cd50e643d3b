"""scib's per-resolution prints and third-party deprecation warnings stay out of the console (issue 18)."""

from __future__ import annotations

import warnings

import numpy as np


def test_clustering_metrics_print_nothing_and_warn_nothing(capsys, pbmc68k_raw):
    from benchmarks.suites.clustering import integration_metrics

    X = pbmc68k_raw.X.toarray() if hasattr(pbmc68k_raw.X, "toarray") else pbmc68k_raw.X
    emb = np.asarray(X[:, :20], dtype=np.float32)
    labels = pbmc68k_raw.obs["bulk_labels"].astype(str).to_numpy()
    batches = pbmc68k_raw.obs["phase"].astype(str).to_numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = integration_metrics(emb, labels, batches, seed=0)
    assert 0 <= out["nmi"] <= 1 and "asw_batch" in out
    assert "Cluster for" not in capsys.readouterr().out
    third_party = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not third_party, [str(w.message)[:100] for w in third_party]
