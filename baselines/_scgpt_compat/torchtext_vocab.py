"""Pure-Python stand-in for the parts of ``torchtext.vocab`` that scGPT uses.

It mirrors the behaviour of torchtext 0.x's ``Vocab`` (a token ↔ index table with an optional
default index for unknown tokens) and ``vocab(ordered_dict, min_freq, specials,
special_first)``; scGPT's :class:`scgpt.tokenizer.GeneVocab` subclasses ``Vocab`` and calls
``insert_token``, ``set_default_index``, ``get_stoi``, ``get_itos``, ``__getitem__``,
``__contains__``, ``__len__`` and ``__call__``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

__cgcbench_shim__ = True


class _VocabTable:
    """The token table (torchtext's C++ ``VocabPybind``)."""

    def __init__(self, tokens: Sequence[str] = ()) -> None:
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        self.default_index: int | None = None
        for t in tokens:
            self.append_token(t)

    def append_token(self, token: str) -> None:
        if token in self.stoi:
            raise RuntimeError(f"token {token} already exists in the Vocab")
        self.stoi[token] = len(self.itos)
        self.itos.append(token)

    def insert_token(self, token: str, index: int) -> None:
        if token in self.stoi:
            raise RuntimeError(f"token {token} already exists in the Vocab")
        if not 0 <= index <= len(self.itos):
            raise RuntimeError(f"index {index} out of range [0, {len(self.itos)}]")
        if index == len(self.itos):  # the common case (GeneVocab.from_dict inserts in order)
            self.append_token(token)
            return
        self.itos.insert(index, token)
        for i in range(index, len(self.itos)):
            self.stoi[self.itos[i]] = i


class Vocab:
    """Token ↔ index vocabulary (the torchtext ``Vocab`` API scGPT relies on)."""

    def __init__(self, vocab: _VocabTable) -> None:
        self.vocab = vocab

    def __len__(self) -> int:
        return len(self.vocab.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.vocab.stoi

    def __getitem__(self, token: str) -> int:
        index = self.vocab.stoi.get(token)
        if index is None:
            if self.vocab.default_index is None:
                raise RuntimeError(
                    f"Token {token} not found and default index is not set"
                )
            return self.vocab.default_index
        return index

    def __call__(self, tokens: Iterable[str]) -> list[int]:
        return self.lookup_indices(list(tokens))

    def __prepare_scriptable__(self) -> Vocab:
        return self

    def set_default_index(self, index: int | None) -> None:
        """Index returned for unknown tokens (``None``: raise)."""
        self.vocab.default_index = index

    def get_default_index(self) -> int | None:
        """Return the default index."""
        return self.vocab.default_index

    def insert_token(self, token: str, index: int) -> None:
        """Insert ``token`` at ``index`` (later tokens shift by one)."""
        self.vocab.insert_token(token, index)

    def append_token(self, token: str) -> None:
        """Append ``token`` at the end."""
        self.vocab.append_token(token)

    def lookup_token(self, index: int) -> str:
        """Return the token at ``index``."""
        if not 0 <= index < len(self.vocab.itos):
            raise RuntimeError(f"index {index} out of range")
        return self.vocab.itos[index]

    def lookup_tokens(self, indices: Sequence[int]) -> list[str]:
        """Return the tokens at ``indices``."""
        return [self.lookup_token(i) for i in indices]

    def lookup_indices(self, tokens: Sequence[str]) -> list[int]:
        """Return the indices of ``tokens``."""
        return [self[t] for t in tokens]

    def get_stoi(self) -> dict[str, int]:
        """Return the token → index dictionary."""
        return dict(self.vocab.stoi)

    def get_itos(self) -> list[str]:
        """Return the index → token list."""
        return list(self.vocab.itos)


def vocab(
    ordered_dict: OrderedDict[str, int] | dict[str, int],
    min_freq: int = 1,
    specials: Sequence[str] | None = None,
    special_first: bool = True,
) -> Vocab:
    """Build a :class:`Vocab` from an ordered token → frequency mapping (torchtext semantics)."""
    specials = list(specials or [])
    for tok in specials:
        ordered_dict.pop(tok, None)
    tokens = [t for t, freq in ordered_dict.items() if freq >= min_freq]
    tokens = specials + tokens if special_first else tokens + specials
    return Vocab(_VocabTable(tokens))


def build_vocab_from_iterator(
    iterator: Iterable[Iterable[str]],
    min_freq: int = 1,
    specials: Sequence[str] | None = None,
    special_first: bool = True,
    max_tokens: int | None = None,
) -> Vocab:
    """Build a :class:`Vocab` from an iterator of token lists (torchtext semantics)."""
    from collections import Counter

    counter: Counter[str] = Counter()
    for tokens in iterator:
        counter.update(tokens)
    specials = list(specials or [])
    ordered = sorted(counter.items(), key=lambda x: (-x[1], x[0]))
    if max_tokens is not None:
        ordered = ordered[: max_tokens - len(specials)]
    return vocab(OrderedDict(ordered), min_freq=min_freq, specials=specials,
                 special_first=special_first)
