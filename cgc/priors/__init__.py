"""Gene priors: vocabulary, TF→target, chromosome position, co-expression and text."""

from cgc.priors.bundle import FLAG_COEXPR, FLAG_POS, FLAG_TFTG, GenePriors
from cgc.priors.sources import PriorSources
from cgc.priors.text import (
    HashingTextEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    default_text_encoder,
)
from cgc.priors.vocab import GeneVocab, MappingReport

__all__ = [
    "FLAG_COEXPR",
    "FLAG_POS",
    "FLAG_TFTG",
    "GenePriors",
    "GeneVocab",
    "HashingTextEncoder",
    "MappingReport",
    "PriorSources",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "default_text_encoder",
]
