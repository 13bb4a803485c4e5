"""Token shards that survive a kill: the writer behind `data/prepare.py --hf_dataset` (data/dataset.py reads them).

A sharded folder holds
    val.bin            the stream's first whole documents, at least val_tokens tokens of them
    train_000000.bin   then the rest of the stream, shard_tokens tokens per shard (the last one shorter)
    train_000001.bin   ...
    meta.json          written last: every shard with its token count and SHA-256, and the totals
The validation split is the head of the stream, not a random sample: a streamed corpus has no
known end to take a tail or a fraction from (llm.c holds out its first shard too).
It ends at a document's end, so no document is in both splits.

While it runs, progress.json records the finished shards and where the next one starts in the
source: a row, and how many of that row's tokens are already in shards. Each shard is written as
<name>.tmp, flushed to disk and renamed, and only then is progress.json replaced. So after a kill
(-9 included) every shard named in progress.json is complete, nothing else looks finished, and
the same command continues after the last finished shard, with a result byte-identical to a run
that was never stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.atomic import remove_file, temp_path, write_whole
from data.tokenizer import DataError

PROGRESS = "progress.json"
VAL_FILE = "val.bin"
TRAIN_FILE = "train_{:06d}.bin"
SHARD_FILE = re.compile(r"(val|train_\d{6})\.bin(\.tmp)?")
SINGLE_TRAIN = "train.bin"  # the train split of data/prepare.py's layout for file sources (val.bin is in both)


class ShardWriter:
    """Cuts a token stream into val.bin and train shards, recording in progress.json how to resume.

    `identity` is what makes two runs the same dataset (source, tokenizer, shard sizes): a
    progress.json or meta.json of another identity is refused. After recorded_tokenizer() and
    start(), the stream restarts at row `resume_row` of the source, whose first `skip_tokens` tokens
    are in shards already.
    """

    def __init__(self, out_dir: Path, identity: dict, *, shard_tokens: int, val_tokens: int, max_tokens: int | None):
        if shard_tokens < 1 or val_tokens < 1:
            raise DataError(f"shard_tokens and val_tokens must be positive, got {shard_tokens} and {val_tokens}")
        if max_tokens is not None and max_tokens <= val_tokens:
            raise DataError(f"max_tokens ({max_tokens}) must be larger than val_tokens ({val_tokens}): training needs tokens too")
        self.out_dir, self.identity = out_dir, identity
        self.shard_tokens, self.val_tokens, self.max_tokens = shard_tokens, val_tokens, max_tokens
        self.tokenizer_meta, self.dtype = {}, np.dtype(np.uint16)  # set by start()
        # position: tokens in finished shards; row, skip: where the stream restarts after them
        self.state = {"position": 0, "row": 0, "skip": 0, "documents": 0, "max_token_id": 0, "shards": {"val": [], "train": []}}
        self.progress = None  # an unfinished run's progress.json
        self.written = 0  # the stream position of the next token to write
        self.file = self.hash = None  # the shard being written
        self.shard_documents = 0
        self.full = False  # max_tokens reached

    # ------------------------------------------------------------ starting

    def finished_meta(self) -> dict | None:
        """meta.json's dict when out_dir already holds this dataset, finished; refuses another dataset's folder."""
        meta = _read_json(self.out_dir / "meta.json")
        if meta is None:
            if (self.out_dir / SINGLE_TRAIN).exists():
                raise DataError(f"{self.out_dir} holds token files without meta.json; choose another --out_dir or pass --overwrite")
            return None
        if meta.get("identity") != self.identity:
            held = f"{meta.get('source', 'unknown source')}, tokenizer {meta.get('tokenizer', '?')}"
            raise DataError(f"{self.out_dir} already holds a different dataset ({held}); choose another --out_dir or pass --overwrite")
        return meta

    def recorded_tokenizer(self) -> dict | None:
        """The tokenizer meta of an unfinished run of this dataset in out_dir (None if there is none);
        an unfinished run of other settings is refused, so two tokenizers never share a folder."""
        self.progress = _read_json(self.out_dir / PROGRESS)
        if self.progress is None:
            return None
        if self.progress.get("identity") != self.identity:
            raise DataError(
                f"{self.out_dir} holds an unfinished dataset of other settings ({_describe(self.progress.get('identity'))}); "
                "run that command again to finish it, choose another --out_dir, or pass --overwrite"
            )
        return self.progress["tokenizer"]

    def start(self, tokenizer_meta: dict, dtype: np.dtype) -> None:
        """Get ready to write with this tokenizer, taking up the unfinished run's state after checking its shards are all there."""
        self.tokenizer_meta, self.dtype = tokenizer_meta, dtype
        if self.progress is None:
            return
        state = self.progress["state"]
        for shard in state["shards"]["val"] + state["shards"]["train"]:
            path = self.out_dir / shard["file"]
            if not path.is_file() or path.stat().st_size != shard["tokens"] * dtype.itemsize:
                raise DataError(f"{path} is missing or changed since it was written; pass --overwrite to start again")
        self.state, self.written = state, state["position"]
        self.full = self.max_tokens is not None and self.written >= self.max_tokens  # stopped after its last shard

    def clear(self) -> None:
        """Remove every dataset file from out_dir (--overwrite): shards, single files, their temporary files, progress and meta."""
        for path in self.out_dir.iterdir():
            if SHARD_FILE.fullmatch(path.name) or path.name in (SINGLE_TRAIN, SINGLE_TRAIN + ".tmp", PROGRESS, "meta.json"):
                remove_file(path)

    @property
    def resume_row(self) -> int:
        """The source row the stream restarts at."""
        return self.state["row"]

    @property
    def skip_tokens(self) -> int:
        """How many of resume_row's tokens are in finished shards already."""
        return self.state["skip"]

    # ------------------------------------------------------------ writing

    def write(self, ids: np.ndarray, start: int, doc_ends: np.ndarray, resume_point: Callable[[int], tuple[int, int]]) -> None:
        """Write those of ids (at stream positions start, start + 1, ...) that are not in shards yet.

        `doc_ends`: the positions just after each end-of-text id in ids; resume_point(position):
        (row, how many of its tokens come before position) for a position in ids.
        """
        end = start + len(ids)
        while self.written < end and not self.full:
            if self.written < start:
                raise AssertionError("the stream restarted after the position it was written up to")
            if self.file is None:
                self._open()
            shard_end = self._shard_end(doc_ends)
            stop = min(end, shard_end, self.max_tokens or end)
            chunk = ids[self.written - start : stop - start]
            self.file.write(chunk.tobytes())
            self.hash.update(chunk.tobytes())
            self.state["max_token_id"] = max(self.state["max_token_id"], int(chunk.max(initial=0)))
            self.shard_documents += int(np.count_nonzero((doc_ends > self.written) & (doc_ends <= stop)))
            self.written = stop
            self.full = stop == self.max_tokens
            if self.full and self.split == "val":
                raise DataError(
                    f"max_tokens ({self.max_tokens:,}) leaves no tokens for training after the validation split (which ends "
                    "at a document's end); "
                    "raise --max_tokens or lower --val_tokens"
                )
            if stop == shard_end or self.full:
                self._close(resume_point(stop))

    def _shard_end(self, doc_ends: np.ndarray) -> int | float:
        """Where the shard being written ends: val.bin at the first document end at or after
        val_tokens (infinity until one comes), a train shard shard_tokens after its start."""
        if self.split == "val":
            after = doc_ends[(doc_ends >= self.val_tokens) & (doc_ends > self.written)]
            return int(after[0]) if len(after) else float("inf")
        return self.state["position"] + self.shard_tokens

    @property
    def split(self) -> str:
        """The split being written: val until val.bin is finished, then train."""
        return "train" if self.state["shards"]["val"] else "val"

    def _name(self) -> str:
        return VAL_FILE if self.split == "val" else TRAIN_FILE.format(len(self.state["shards"]["train"]))

    def _open(self) -> None:
        self.file = open(temp_path(self.out_dir / self._name()), "wb")  # noqa: SIM115 (closed by _close or abort)
        self.hash, self.shard_documents = hashlib.sha256(), 0

    def _close(self, resume_at: tuple[int, int]) -> None:
        """Flush the shard to disk and put it in place, then record it in progress.json."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        name = self._name()
        os.replace(temp_path(self.out_dir / name), self.out_dir / name)
        tokens = self.written - self.state["position"]
        self.state["shards"][self.split].append({"file": name, "tokens": tokens, "sha256": self.hash.hexdigest()})
        self.state["position"] = self.written
        self.state["documents"] += self.shard_documents
        self.state["row"], self.state["skip"] = resume_at
        self.file = self.hash = None
        progress = {"identity": self.identity, "tokenizer": self.tokenizer_meta, "state": self.state}
        write_whole(self.out_dir / PROGRESS, json.dumps(progress, indent=1) + "\n")

    def abort(self) -> None:
        """Close and remove the shard being written; the finished ones stay, for a resume."""
        if self.file is not None:
            with contextlib.suppress(OSError):  # flushing what is buffered fails again on a full disk; the file goes anyway
                self.file.close()
            remove_file(self.file.name)
            self.file = None

    # ------------------------------------------------------------ finishing

    def finish(self, stream_end: tuple[int, int]) -> dict:
        """Close the last shard, check that both splits hold tokens, write meta.json and drop progress.json; returns meta."""
        if self.file is not None and self.split == "val":
            raise DataError(
                f"corpus too small: it ended after {self.written:,} tokens, inside the validation split "
                f"(val_tokens={self.val_tokens:,}); lower --val_tokens"
            )
        if self.file is not None:
            self._close(stream_end)
        shards = self.state["shards"]
        if not self.written:
            raise DataError(f"no text: every row of {self.identity['source']} is empty")
        if not shards["train"]:
            raise DataError(f"corpus too small: its {self.written:,} tokens all went to the validation split; lower --val_tokens")
        meta = {
            **self.tokenizer_meta,
            "dtype": self.dtype.name,
            "train_tokens": sum(s["tokens"] for s in shards["train"]),
            "val_tokens": sum(s["tokens"] for s in shards["val"]),
            "max_token_id": self.state["max_token_id"],
            "documents": self.state["documents"],
            "source": self.identity["source"],
            "shard_tokens": self.shard_tokens,
            "shards": shards,
            "identity": self.identity,
        }
        write_whole(self.out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
        remove_file(self.out_dir / PROGRESS)
        return meta


def _read_json(path: Path) -> dict | None:
    """The JSON object in `path`; None when the file is not there, unreadable or not an object."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def _describe(identity) -> str:
    if not isinstance(identity, dict):
        return "unknown"
    return ", ".join(f"{key} {value}" for key, value in identity.items())
