"""Tokenizers for data preparation and sampling: tiktoken encodings and characters.

Every problem a user can cause (unknown name, missing tokenizer files, a character
outside the vocabulary) raises `DataError` with a one-line message; command-line
tools print it as `error: <message>` instead of a stack trace.
"""

from __future__ import annotations

import os

import numpy as np
import tiktoken

from core.entry import UserError

# The character-level tokenizer separates documents with NUL. Text files never
# contain it (data/prepare.py treats files with NUL bytes as binary), so the
# separator cannot collide with a character of the corpus.
CHAR_SEPARATOR = "\x00"
UNKNOWN = np.iinfo(np.uint32).max  # what CharTokenizer looks up for a character outside its vocabulary

# tiktoken builds "gpt2" from two files (vocab.bpe, encoder.json) and "r50k_base"
# from one; the tokens are identical, so either cached copy will do.
GPT2_EQUIVALENT = {"gpt2": "r50k_base"}


class DataError(UserError, ValueError):
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

    def encode_to_numpy(self, text: str) -> np.ndarray:
        """Token ids of ordinary text as a uint32 array; special tokens in it are plain text."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_to_numpy(text).tolist()

    def decode(self, ids) -> str:
        """Text of a sequence of token ids (the end-of-text id included)."""
        raise NotImplementedError

    def meta(self) -> dict:
        """The fields meta.json needs to rebuild this tokenizer."""
        return {"tokenizer": self.name, "vocab_size": self.vocab_size, "eot_id": self.eot_id}

    def byte_lengths(self) -> np.ndarray:
        """The UTF-8 bytes of text each id stands for (0 for end-of-text, a separator and no text): bits per byte's denominator."""
        raise NotImplementedError


class TiktokenTokenizer(Tokenizer):
    """A tiktoken `Encoding` with an `<|endoftext|>` special token."""

    def __init__(self, encoding: tiktoken.Encoding, name: str | None = None):
        if "<|endoftext|>" not in encoding.special_tokens_set:
            raise DataError(f"tiktoken encoding {encoding.name!r} has no <|endoftext|> token")
        self.encoding = encoding
        self.name = name or encoding.name
        self.vocab_size = encoding.n_vocab
        self.eot_id = encoding.eot_token

    def encode_to_numpy(self, text: str) -> np.ndarray:
        # tiktoken releases the GIL while it encodes, so threads encode in parallel
        try:
            return self.encoding.encode_to_numpy(text, disallowed_special=())
        except UnicodeEncodeError:  # lone surrogates (a str from a caller; UTF-8 files have none): replaced, as encode() does
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self.encoding.encode_to_numpy(text, disallowed_special=())

    def decode(self, ids) -> str:
        return self.encoding.decode([int(i) for i in ids])

    def byte_lengths(self) -> np.ndarray:
        def length(i):
            try:
                return len(self.encoding.decode_single_token_bytes(i))
            except KeyError:  # an id the encoding skips
                return 0

        lengths = np.array([length(i) for i in range(self.vocab_size)], dtype=np.int64)
        for token in self.encoding.special_tokens_set:  # markers such as <|endoftext|>, not text
            lengths[self.encoding.encode_single_token(token)] = 0
        return lengths


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
        self.vocab_size = len(self.vocab)
        self.eot_id = self.vocab.index(CHAR_SEPARATOR)
        # id of each code point up to the largest in the vocabulary, then one UNKNOWN for any beyond
        code_points = [ord(c) for c in self.vocab]
        self.id_of = np.full(max(code_points) + 2, UNKNOWN, dtype=np.uint32)
        self.id_of[code_points] = np.arange(self.vocab_size)

    def encode_to_numpy(self, text: str) -> np.ndarray:
        if CHAR_SEPARATOR in text:
            raise DataError("text contains NUL, which the char tokenizer reserves as document separator")
        code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        ids = self.id_of.take(code_points, mode="clip")
        if (unknown := ids == UNKNOWN).any():
            raise DataError(f"character {chr(code_points[unknown.argmax()])!r} is not in the char vocabulary")
        return ids

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def byte_lengths(self) -> np.ndarray:
        return np.array([0 if c == CHAR_SEPARATOR else len(c.encode("utf-8", "surrogatepass")) for c in self.vocab], dtype=np.int64)

    def meta(self) -> dict:
        # one string, in id order: readable in meta.json and accepted by CharTokenizer
        return {**super().meta(), "vocab": "".join(self.vocab)}


def get_tokenizer(name: str) -> Tokenizer:
    """Load a tiktoken encoding by name ('gpt2', 'r50k_base', 'cl100k_base', ...).

    tiktoken downloads its files on first use and otherwise reads them from
    TIKTOKEN_CACHE_DIR. 'gpt2' falls back to the identical 'r50k_base' when its
    own files are unavailable. 'char' needs a corpus: use `CharTokenizer(vocab)`.
    """
    if name == "char":
        raise DataError("the char tokenizer is built from a corpus: use CharTokenizer(vocab)")
    known = tiktoken.list_encoding_names()
    if name not in known:
        raise DataError(f"unknown tokenizer {name!r}; available: {', '.join(known)}, char")
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
        tokenizer = CharTokenizer(meta["vocab"]) if name == "char" else get_tokenizer(name)
        expected = (meta["vocab_size"], meta["eot_id"])
    except KeyError as e:
        raise DataError(f"meta.json lacks the field {e.args[0]!r}") from None
    if (tokenizer.vocab_size, tokenizer.eot_id) != tuple(expected):
        raise DataError(
            f"tokenizer {name!r} has vocab size {tokenizer.vocab_size} and end-of-text id "
            f"{tokenizer.eot_id}, but meta.json records {expected[0]} and {expected[1]}"
        )
    return tokenizer
