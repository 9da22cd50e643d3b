"""Symbol ↔ Ensembl mapping shared by the adapters."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from baselines.gene_ids import Coverage, GeneIdMapper, default_mapper, var_gene_ids
from benchmarks.errors import InputError


def test_gene_info_mapping_round_trip() -> None:
    mapper = default_mapper()
    ens = mapper.to_ensembl(["TP53", "gata1", "NOT_A_GENE", "ENSG00000141510.17"])
    assert ens == ["ENSG00000141510", "ENSG00000102145", None, "ENSG00000141510"]
    assert mapper.to_symbol(["ENSG00000141510", "ENSG00000102145.3"]) == ["TP53", "GATA1"]


def test_priority_table_wins() -> None:
    base = GeneIdMapper([("A", "ENSG1"), ("B", "ENSG2")])
    merged = base.with_priority({"A": "ENSG9"})
    assert merged.to_ensembl(["A", "B"]) == ["ENSG9", "ENSG2"]


def test_var_gene_ids_uses_columns_then_maps(norman) -> None:
    assert var_gene_ids(norman, "symbol")[:3] == ["RP4-633I8.4", "CFAP57", "LINC01562"]
    bare = ad.AnnData(np.zeros((2, 2), np.float32))
    bare.var_names = ["TP53", "MYC"]
    assert var_gene_ids(bare, "ensembl") == ["ENSG00000141510", "ENSG00000136997"]


def test_coverage_refuses_to_drop_most_genes() -> None:
    Coverage(10, 9).check("m")
    with pytest.raises(InputError, match="only 2/10"):
        Coverage(10, 2, ["x"]).check("m")
