"""Tokenizers for data preparation and sampling: tiktoken encodings and characters.

Every problem a user can cause (unknown name, missing tokenizer files, a character
outside the vocabulary) raises `DataError` with a one-line message; command-line
tools print it as `error: <message>` instead of a stack trace.
"""

from __future__ import annotations

import os

import tiktoken

ENDOFTEXT = "<|endoftext|>"

# The character-level tokenizer separates documents with NUL. Text files never
# contain it (data/prepare.py treats files with NUL bytes as binary), so the
# separator cannot collide with a character of the corpus.
CHAR_SEPARATOR = "\x00"

# tiktoken builds "gpt2" from two files (vocab.bpe, encoder.json) and "r50k_base"
# from one; the tokens are identical, so either cached copy will do.
GPT2_EQUIVALENT = {"gpt2": "r50k_base"}


class DataError(ValueError):
    """A problem with the user's data or options, explained in one line."""


class Tokenizer:
    """Maps text to token ids and back.

    Attributes: `name` (what meta.json records and `get_tokenizer` accepts),
    `vocab_size` (every id is below it) and `eot_id` (the end-of-text id that
    separates documents).
    """

    name: str
    vocab_size: int
    eot_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ordinary text; special tokens in it are treated as plain text."""
        raise NotImplementedError

    def decode(self, ids) -> str:
        """Text of a sequence of token ids (the end-of-text id included)."""
        raise NotImplementedError

    def meta(self) -> dict:
        """The fields meta.json needs to rebuild this tokenizer."""
        return {"tokenizer": self.name, "vocab_size": self.vocab_size, "eot_id": self.eot_id}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} vocab_size={self.vocab_size}>"


class TiktokenTokenizer(Tokenizer):
    """A tiktoken `Encoding` with an `<|endoftext|>` special token."""

    def __init__(self, encoding: tiktoken.Encoding, name: str | None = None):
        if ENDOFTEXT not in encoding.special_tokens_set:
            raise DataError(f"tiktoken encoding {encoding.name!r} has no {ENDOFTEXT} token")
        self.encoding = encoding
        self.name = name or encoding.name
        self.vocab_size = encoding.n_vocab
        self.eot_id = encoding.eot_token

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.encoding.decode([int(i) for i in ids])


class CharTokenizer(Tokenizer):
    """One token per character; id = position in the sorted vocabulary.

    The vocabulary always contains `CHAR_SEPARATOR` (NUL), the end-of-text token.
    """

    name = "char"

    def __init__(self, vocab: str | list[str]):
        chars = set(vocab) | {CHAR_SEPARATOR}
        if any(len(c) != 1 for c in chars):
            raise DataError("a char vocabulary must be a list of single characters")
        self.vocab = sorted(chars)
        self._ids = {c: i for i, c in enumerate(self.vocab)}
        self.vocab_size = len(self.vocab)
        self.eot_id = self._ids[CHAR_SEPARATOR]

    def encode(self, text: str) -> list[int]:
        if CHAR_SEPARATOR in text:
            raise DataError("text contains NUL, which the char tokenizer reserves as document separator")
        ids = self._ids
        try:
            return [ids[c] for c in text]
        except KeyError as e:
            raise DataError(f"character {e.args[0]!r} is not in the char vocabulary") from None

    def decode(self, ids) -> str:
        vocab = self.vocab
        return "".join(vocab[int(i)] for i in ids)

    def meta(self) -> dict:
        # one string, in id order: readable in meta.json and accepted by char_tokenizer
        return {**super().meta(), "vocab": "".join(self.vocab)}


def tiktoken_tokenizer(encoding: tiktoken.Encoding, name: str | None = None) -> Tokenizer:
    """Wrap an `Encoding` (e.g. one built in-process from your own ranks) as a Tokenizer."""
    return TiktokenTokenizer(encoding, name)


def char_tokenizer(vocab: str | list[str]) -> Tokenizer:
    """A character-level tokenizer over `vocab` plus the NUL document separator."""
    return CharTokenizer(vocab)


def available_tokenizers() -> list[str]:
    """Names `get_tokenizer` understands, plus 'char' (built by data/prepare.py)."""
    return [*tiktoken.list_encoding_names(), "char"]


def get_tokenizer(name: str) -> Tokenizer:
    """Load a tiktoken encoding by name ('gpt2', 'r50k_base', 'cl100k_base', ...).

    tiktoken downloads its files on first use and otherwise reads them from
    TIKTOKEN_CACHE_DIR. 'gpt2' falls back to the identical 'r50k_base' when its
    own files are unavailable. 'char' needs a corpus: use `char_tokenizer`.
    """
    if name == "char":
        raise DataError("the char tokenizer is built from a corpus: use char_tokenizer(vocab)")
    known = tiktoken.list_encoding_names()
    if name not in known:
        raise DataError(f"unknown tokenizer {name!r}; available: {', '.join(available_tokenizers())}")
    candidates = [name] + ([GPT2_EQUIVALENT[name]] if name in GPT2_EQUIVALENT else [])
    error = None
    for candidate in candidates:
        try:
            return TiktokenTokenizer(tiktoken.get_encoding(candidate), name=name)
        except Exception as e:  # tiktoken surfaces network and cache problems as many types
            error = e
    cache = os.environ.get("TIKTOKEN_CACHE_DIR", "unset")
    raise DataError(
        f"could not load tokenizer {name!r} (tried {', '.join(candidates)}; last error: "
        f"{type(error).__name__}); without internet, set TIKTOKEN_CACHE_DIR to a folder holding "
        f"tiktoken's cached files (now: {cache})"
    )


def tokenizer_from_meta(meta: dict) -> Tokenizer:
    """Rebuild the tokenizer a dataset was prepared with, from its meta.json."""
    try:
        name = meta["tokenizer"]
        tokenizer = char_tokenizer(meta["vocab"]) if name == "char" else get_tokenizer(name)
        expected = (meta["vocab_size"], meta["eot_id"])
    except KeyError as e:
        raise DataError(f"meta.json lacks the field {e.args[0]!r}") from None
    if (tokenizer.vocab_size, tokenizer.eot_id) != tuple(expected):
        raise DataError(
            f"tokenizer {name!r} has vocab size {tokenizer.vocab_size} and end-of-text id "
            f"{tokenizer.eot_id}, but meta.json records {expected[0]} and {expected[1]}"
        )
    return tokenizer


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (tiktoken and datasets write long ones)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
