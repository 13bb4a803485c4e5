"""Write lm-evaluation-harness tasks that score an exported model on our held-out text and on labelled texts, offline.

    python data/lm_eval_tasks.py --data_dir=data/shakespeare_char --labelled_file=../shared/corpora/sentiment_tweets/test.csv \\
        --tasks_dir=out/lm_eval_tasks
    lm_eval --model hf --model_args pretrained=out/swiglu/hf --tasks swiglu_heldout,swiglu_sentiment --include_path out/lm_eval_tasks

Two tasks, each a YAML file beside the JSON Lines file it reads:
- swiglu_heldout (heldout.jsonl): the val split of a folder written by data/prepare.py, decoded and cut into
  its documents at the end-of-text ids, scored as lm-eval scores wikitext (loglikelihood_rolling: word and
  byte perplexity, bits per byte). The split is the stream's tail, so its first document may be partial.
- swiglu_sentiment (sentiment.jsonl), only with --labelled_file: zero-shot multiple choice, the model's
  log-likelihood of " <label>" after a short prompt, for each label of the file (acc, acc_norm).

The YAML files hold the absolute path of their JSON Lines file (lm-eval and datasets would resolve a
relative one against the directory lm_eval runs in), so tasks_dir is generated output: rebuild it on
another machine rather than copying it. Every file is written as <name>.tmp and renamed when all are
complete, the YAML files last: a mistake, a failure or Ctrl-C leaves tasks_dir as it was.
"""

# ruff: noqa: E402 (the imports after the guard are late on purpose)

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python data/lm_eval_tasks.py`: import from the repo root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from core.entry import interrupt_guard

with interrupt_guard(__name__, "data/lm_eval_tasks.py"):  # nothing to clean up yet: one line, no traceback
    import contextlib
    import json
    import os
    from collections.abc import Callable, Iterator
    from dataclasses import dataclass

    import numpy as np
    import yaml

    from core.atomic import remove_file, temp_path
    from core.configurator import load_options
    from core.entry import run_main
    from core.lock import HOLDER_NAME, exclusive_folder
    from data.dataset import open_dataset
    from data.labelled import load_labelled_file
    from data.tokenizer import CharTokenizer, DataError, Tokenizer, tokenizer_from_meta

HELDOUT_TASK, SENTIMENT_TASK = "swiglu_heldout", "swiglu_sentiment"
HELDOUT_FILE, SENTIMENT_FILE = "heldout.jsonl", "sentiment.jsonl"
# Everything this script writes, in the order it is renamed into place: a YAML file only once the file it reads is there.
OUR_FILES = (HELDOUT_FILE, SENTIMENT_FILE, f"{HELDOUT_TASK}.yaml", f"{SENTIMENT_TASK}.yaml")
PROMPT = "Text: {{text}}\nSentiment:"  # lm-eval appends " " (target_delimiter) and the label name
SCAN_CHUNK = 1 << 24  # val tokens searched for end-of-text ids at a time (64 MB of uint32)


@dataclass
class LmEvalTaskOptions:
    data_dir: str = ""  # a folder written by data/prepare.py; its val split is the held-out text
    tasks_dir: str = "out/lm_eval_tasks"  # where the task files go: lm_eval's --include_path
    labelled_file: str = ""  # labelled texts (CSV, JSONL or Parquet) for the sentiment task; '' = no sentiment task
    text_column: str = "text"  # labelled_file's column holding the text
    label_column: str = "label"  # labelled_file's column holding the label
    labels: str = ""  # comma list: keep only these labels, in this class order; '' = every label of the file
    max_docs: int = 0  # held-out documents to keep, the first ones; 0 = all (lm_eval --limit cuts both tasks at run time)
    overwrite: bool = False  # write into a tasks_dir that holds files other than ours (they are left as they are)

    def __post_init__(self):
        if self.max_docs < 0:
            raise ValueError(f"max_docs must be 0 (all) or more, got {self.max_docs}")


USAGE = "python data/lm_eval_tasks.py --data_dir=DIR [--labelled_file=FILE] [--tasks_dir=DIR] [--key=value ...]"
MORE_HELP = f"""

tasks written (lm_eval --tasks ... --include_path TASKS_DIR):
  {HELDOUT_TASK:<17} bits per byte, byte and word perplexity of the val split's documents
  {SENTIMENT_TASK:<17} zero-shot accuracy choosing a label of labelled_file (only when given)

Offline, set HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 for lm_eval: the files are all local."""


# ---------------------------------------------------------------- the two tables


def document_spans(tokens: np.ndarray, eot_id: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of tokens between end-of-text ids, in order; empty runs are skipped."""
    start = 0
    for offset in range(0, len(tokens), SCAN_CHUNK):  # in chunks: a whole split's comparison would double its memory
        for end in np.flatnonzero(np.asarray(tokens[offset : offset + SCAN_CHUNK]) == eot_id) + offset:
            if end > start:
                yield start, int(end)
            start = int(end) + 1
    if start < len(tokens):
        yield start, len(tokens)


def heldout_documents(tokens: np.ndarray, tokenizer: Tokenizer, max_docs: int = 0) -> list[str]:
    """The documents of a token stream (a val split) as text, in order; at most max_docs if given."""
    documents = []
    for start, end in document_spans(tokens, tokenizer.eot_id):
        if text := tokenizer.decode(tokens[start:end]):  # tokens of no text (a lone special token) make no document
            documents.append(text)
        if len(documents) == max_docs:
            break
    if not documents:
        raise DataError("the val split holds no text, only end-of-text ids")
    return documents


# ---------------------------------------------------------------- the task files


def local_task(name: str, jsonl: Path) -> dict:
    """The start of a task config whose test split is the local JSON Lines file `jsonl`."""
    return {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(jsonl)}}, "test_split": "test"}


def heldout_task(jsonl: Path) -> dict:
    """lm-eval's config of the held-out task: wikitext's metrics on the documents of `jsonl`, one {"text"} per line."""
    return {
        **local_task(HELDOUT_TASK, jsonl),
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        # The column name, not "{{text}}": lm-eval hands a column over as it is, but reads a rendered
        # template that looks like "[...]" as a Python list, and one of digits as a number.
        "doc_to_target": "text",
        "metric_list": [  # lm-eval's defaults for these metrics, written out: left out, each costs two warnings
            {"metric": "word_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
            {"metric": "byte_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
            {"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False},
        ],
        "metadata": {"version": 1.0},
    }


def sentiment_task(jsonl: Path, label_names: list[str]) -> dict:
    """lm-eval's config of the sentiment task: zero-shot multiple choice among label_names on the rows of `jsonl`."""
    return {
        **local_task(SENTIMENT_TASK, jsonl),
        "output_type": "multiple_choice",
        "num_fewshot": 0,
        "doc_to_text": PROMPT,
        "doc_to_target": "label",  # the class id: an index into doc_to_choice
        "doc_to_choice": list(label_names),
        "target_delimiter": " ",  # between the prompt and each choice: the model scores " negative"
        "metric_list": [{"metric": name, "aggregation": "mean", "higher_is_better": True} for name in ("acc", "acc_norm")],
        "metadata": {"version": 1.0},
    }


def _jsonl_writer(records: list[dict]) -> Callable:
    def write(f):
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    return write


class _TaskDumper(yaml.SafeDumper):
    """YAML as a person writes it: a text with a line break in double quotes, "Text: {{text}}\\nSentiment:"."""


_TaskDumper.add_representer(
    str, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"' if "\n" in text else None)
)


def _yaml_writer(config: dict) -> Callable:
    return lambda f: yaml.dump(config, f, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True, width=1 << 16)


def check_tasks_dir(tasks_dir: Path, overwrite: bool) -> None:
    """Raise DataError if tasks_dir is a file, or holds files not ours (a mistyped --tasks_dir) and overwrite is off."""
    if tasks_dir.exists() and not tasks_dir.is_dir():
        raise DataError(f"--tasks_dir {tasks_dir} is a file, not a folder")
    if not tasks_dir.is_dir() or overwrite:
        return
    ours = {*OUR_FILES, *(temp_path(name).name for name in OUR_FILES), HOLDER_NAME}
    if others := sorted(p.name for p in tasks_dir.iterdir() if p.name not in ours):
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise DataError(f"--tasks_dir {tasks_dir} holds files not written here ({shown}); choose another or pass --overwrite")


def publish(tasks_dir: Path, writers: dict[str, Callable]) -> None:
    """Write each file (name -> write(f)) as <name>.tmp in tasks_dir, then rename them all into place and
    remove our files that this run does not make (an old run's sentiment task). Until the renames, which
    take no time, nothing in tasks_dir changes; temp files never stay behind."""
    temps = {name: temp_path(tasks_dir / name) for name in writers}
    try:
        for name in [n for n in OUR_FILES if n in writers]:
            with open(temps[name], "w", encoding="utf-8") as f:
                writers[name](f)
                f.flush()
                os.fsync(f.fileno())
        for name in [n for n in OUR_FILES if n in writers]:
            os.replace(temps[name], tasks_dir / name)
        for name in reversed(OUR_FILES):  # a stale YAML goes before the file it reads
            if name not in writers:
                remove_file(tasks_dir / name)
    finally:
        for tmp in temps.values():
            with contextlib.suppress(OSError):  # cleaning up must not hide the error that got us here
                remove_file(tmp)


# ---------------------------------------------------------------- command line


def task_files(options: LmEvalTaskOptions, tasks_dir: Path) -> tuple[dict, dict]:
    """(file name -> its writer, what they hold): the inputs read and checked, nothing written yet."""
    dataset = open_dataset(options.data_dir)
    tokenizer = tokenizer_from_meta(dataset.meta)
    documents = heldout_documents(dataset.val, tokenizer, options.max_docs)
    writers = {HELDOUT_FILE: _jsonl_writer([{"text": text} for text in documents])}
    writers[f"{HELDOUT_TASK}.yaml"] = _yaml_writer(heldout_task(tasks_dir / HELDOUT_FILE))
    summary = {"tasks_dir": tasks_dir, "documents": len(documents), "bytes": sum(len(t.encode("utf-8")) for t in documents)}
    if options.labelled_file:
        labels = tuple(filter(None, options.labels.split(",")))
        rows = load_labelled_file(options.labelled_file, options.text_column, options.label_column, labels)
        records = [{"text": text, "label": int(label)} for text, label in zip(rows.texts, rows.labels, strict=True)]
        writers[SENTIMENT_FILE] = _jsonl_writer(records)
        writers[f"{SENTIMENT_TASK}.yaml"] = _yaml_writer(sentiment_task(tasks_dir / SENTIMENT_FILE, rows.label_names))
        summary.update(rows=len(rows.texts), classes={name: int((rows.labels == i).sum()) for i, name in enumerate(rows.label_names)})
        if isinstance(tokenizer, CharTokenizer):  # BPE reads any text; characters reads only its vocabulary
            known = set(tokenizer.vocab)
            summary["unknown"] = [sorted(set(text) - known) for text in rows.texts if not known.issuperset(text)]
    return writers, summary


def make_tasks(options: LmEvalTaskOptions) -> dict:
    """Read the inputs, then write the tasks into options.tasks_dir; returns what was written. Mistakes surface before any writing."""
    if not options.data_dir:
        raise DataError("--data_dir=DIR is required: a folder written by data/prepare.py")
    tasks_dir = Path(options.tasks_dir).absolute()
    check_tasks_dir(tasks_dir, options.overwrite)
    writers, summary = task_files(options, tasks_dir)
    created = not tasks_dir.exists()
    try:
        tasks_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create --tasks_dir {tasks_dir}: {e.strerror or e}") from None
    try:
        with exclusive_folder(tasks_dir, "--tasks_dir"):  # two runs into one folder would mix their files
            publish(tasks_dir, writers)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # a folder we made and left empty goes too; anything else stays
                tasks_dir.rmdir()
        raise
    return summary


def report(summary: dict) -> str:
    """What was written, and the lm_eval command that runs it."""
    tasks_dir = summary["tasks_dir"]
    lines = [f"wrote {tasks_dir}:", f"  {HELDOUT_TASK}: {summary['documents']:,} documents, {summary['bytes']:,} bytes"]
    tasks = [HELDOUT_TASK]
    if "rows" in summary:
        classes = ", ".join(f"{name} ({count:,})" for name, count in summary["classes"].items())
        lines.append(f"  {SENTIMENT_TASK}: {summary['rows']:,} rows, {len(summary['classes'])} classes: {classes}")
        tasks.append(SENTIMENT_TASK)
    if unknown := summary.get("unknown"):
        chars = sorted(set().union(*unknown))
        shown = " ".join(repr(c) for c in chars[:8]) + (f" and {len(chars) - 8} more" if len(chars) > 8 else "")
        lines.append(
            f"  note: {len(unknown):,} of the rows hold characters the vocabulary lacks ({shown}); the model reads each as end-of-text"
        )
    lines += [
        "run (an exported model folder: python export.py --out_dir=RUN):",
        f"  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 lm_eval --model hf --model_args pretrained=RUN/hf "
        f"--tasks {','.join(tasks)} --include_path {tasks_dir}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Exit status as core.entry.run_main's: 0, 2 for a mistake (one `error:` line), 128 + the signal number."""
    argv = sys.argv[1:] if argv is None else list(argv)

    def body():
        description = __doc__.strip().splitlines()[0]
        options, rest = load_options(LmEvalTaskOptions, argv, "data/lm_eval_tasks.py", USAGE, description, more_help=MORE_HELP)
        if rest:
            raise DataError(f"unexpected argument {rest[0]!r}: every option is --key=value (-h lists them)")
        print(report(make_tasks(options)))

    return run_main("data/lm_eval_tasks.py", body, on_interrupt="the task folder was left as it was")


if __name__ == "__main__":
    sys.exit(main())
