"""CGC learns real biology (slow): tests that fail when the model learns nothing.

Both run the full adapter on real labels with the suites' own splits, from random weights
(``no-pretrain``: no pre-training corpus is needed, so the tests are about the encoder and
the fine-tuning, which the node-encoding defect broke) with a small configuration.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cgc import CGCConfig, CGCModel, GenePriors, save_checkpoint
from cgc.priors import HashingTextEncoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> str:
    """Random weights of the default small configuration, with real prior files."""
    from baselines.gene_ids import resource_path

    priors = GenePriors.build(vocab_path=resource_path("cgc_vocab"),
                              positions_path=resource_path("gene_positions_hg38"),
                              trrust_path=resource_path("trrust_human"),
                              gene_info_path=resource_path("gene_info_hs"),
                              text_encoder=HashingTextEncoder(32),
                              text_cache_dir=tmp_path_factory.mktemp("text"), extend_vocab=False)
    torch.manual_seed(0)
    model = CGCModel(CGCConfig.small(max_genes=256), priors)
    return str(save_checkpoint(tmp_path_factory.mktemp("ck") / "random", model, priors, step=0))


def test_annotation_on_pbmc68k_beats_the_majority_control_by_a_wide_margin(random_checkpoint) -> None:
    from baselines.cgc_model import CGCAdapter
    from benchmarks.data.load import load_dataset
    from benchmarks.suites.annotation import AnnotationSuite

    card, adata = load_dataset("pbmc68k_reduced")
    task = AnnotationSuite().prepare(adata, card, 0)
    ref, query, key = task.payload["reference"], task.payload["query"], task.payload["label_key"]
    a = CGCAdapter(checkpoint=random_checkpoint, pretrained=False, seed=0, lr=1e-3,
                   classifier_epochs=12)
    a.fit_classifier(ref, key)
    truth = query.obs[key].astype(str).to_numpy()
    acc = float((a.predict_labels(query) == truth).mean())
    majority = float((truth == ref.obs[key].astype(str).value_counts().index[0]).mean())
    assert acc >= majority + 0.25, (acc, majority)


@pytest.mark.xfail(strict=True, reason=(
    "open (issue 13 clustering acceptance): after 6 epochs of masked fine-tuning with domain "
    "adaptation h_c still carries batch (probe gain 0.29 over chance) more than cell type (0.17)"))
def test_cell_embedding_carries_cell_type_more_than_batch_after_domain_adaptation(random_checkpoint
                                                                                  ) -> None:
    """sergio_batches: 4 SERGIO cell types × 3 batches with real batch effects."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from baselines.cgc_model import CGCAdapter
    from benchmarks.data.load import load_dataset

    card, adata = load_dataset("sergio_batches")
    rng = np.random.default_rng(0)
    adata = adata[np.sort(rng.choice(adata.n_obs, min(600, adata.n_obs), replace=False))].copy()
    spec = card.anndata
    label, batch = adata.obs[spec.label_key].astype(str), adata.obs[spec.batch_key].astype(str)
    a = CGCAdapter(checkpoint=random_checkpoint, pretrained=False, seed=0, lr=1e-3, finetune_epochs=6)
    a.fit(adata, batch_key=spec.batch_key)
    h = a.embed_cells(adata)
    h = (h - h.mean(0)) / (h.std(0) + 1e-8)

    def probe(y) -> float:
        return float(cross_val_score(LogisticRegression(max_iter=2000), h, y, cv=3).mean())

    def chance(y) -> float:
        return float(y.value_counts(normalize=True).max())

    cell_type_gain = probe(label) - chance(label)
    batch_gain = probe(batch) - chance(batch)
    assert cell_type_gain > batch_gain, (cell_type_gain, batch_gain)
    assert cell_type_gain > 0.2
