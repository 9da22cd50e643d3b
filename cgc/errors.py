"""Exception types raised by :mod:`cgc` for bad input.

Every error subclasses :class:`CGCError`, itself a :class:`ValueError`, and its message
names the offending file or field and how to fix it.
"""

from __future__ import annotations


class CGCError(ValueError):
    """Base class of all input errors raised by :mod:`cgc`."""


class InputFileError(CGCError):
    """A prior/corpus input file is missing, unreadable or lacks a required column."""


class VocabularyError(CGCError):
    """Too few genes of the input could be mapped to the gene vocabulary."""


class NoOverlapError(VocabularyError):
    """A corpus shares no genes with the gene priors bundle."""


class ConfigError(CGCError):
    """A configuration value is invalid or inconsistent."""


class MemoryBudgetError(ConfigError):
    """The requested configuration does not fit in the available memory."""


class CheckpointError(CGCError):
    """A checkpoint directory is missing files, truncated or corrupted."""


class PriorsMismatchError(CGCError):
    """A checkpoint or corpus was built with a different gene priors bundle."""


class CorpusError(CGCError):
    """A pre-processed corpus directory is missing, empty or corrupted."""
