"""Labelled texts for sequence classification: a train and a test split, labels as class ids.

    data = load_labelled("train.csv", "test.csv", labels=("negative", "positive"))
    data = load_labelled(hf_dataset="tweet_eval", hf_config="sentiment", test_split="validation")

The `datasets` library reads every source: its CSV, JSON and Parquet builders the files, and
`load_dataset` a Hugging Face dataset, so all of them become the same Arrow-backed Dataset and
share one set of checks. sentiment_tweets (train.csv 3.6 MB, 31,595 rows, and test.csv) loads in
0.16 s, 0.04 s once datasets has cached it, after the 0.7 s that importing datasets takes.
Every problem with the data raises `DataError` with a one-line message that names the file or
split and says what to change.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import functools
import json
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from core.paths import recorded_path
from data.tokenizer import DataError

# File extension -> format. Files are read by datasets.Dataset.from_<format>: the builders that
# load_dataset("csv", data_files=...) uses, without its look-up on the hub and the download-count
# request it sends to huggingface.co for local files too (which stalled some loads by 5 s, offline).
FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
INTEGER = re.compile(r"-?[0-9]+")  # labels that all look like this sort as numbers: 2 before 10


@dataclass
class LabelledData:
    """Texts with class ids, in file order; class id i is label_names[i]."""

    train_texts: list[str]
    train_labels: np.ndarray  # int64 class ids
    test_texts: list[str]
    test_labels: np.ndarray  # int64 class ids
    label_names: list[str]  # class id -> label name (as a string)
    source: str  # one-line description (files or hub dataset, columns, label subset), recorded with the run


def load_labelled(
    train_file: str = "",
    test_file: str = "",
    hf_dataset: str = "",
    hf_config: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    text_column: str = "text",
    label_column: str = "label",
    labels: tuple[str, ...] = (),
) -> LabelledData:
    """Read labelled texts from a pair of files or a Hugging Face dataset.

    Give one source: train_file and test_file (CSV, JSON Lines / JSON or Parquet, told by the extension, or by
    hf_dataset="csv", "json" or "parquet" for other names), or hf_dataset (a hub name or a local folder, with hf_config,
    train_split and test_split, which may be slices such as "train[:1000]"). Files never reach the network; a hub one may.

    Labels are compared as strings: 1 in a JSON file and "1" in a CSV file are the same label (CSV cells are read as
    text, with nothing turned into a number or a missing value). Typed labels may be strings, integers (exact at any
    size; a number over 2**53 that the JSON reader turned into a float is refused, as it may have merged labels), whole
    floats (1.0 is "1": pandas stores integer columns with gaps as floats) and bools ("true", "false", as JSON spells
    them); anything else (lists, fractions) is an error. A ClassLabel column of a Hugging Face dataset gives its label
    names. `labels` keeps only the rows with those labels, in both splits, and fixes the class order (class id = position
    in `labels`); else the classes are the train split's, in the ClassLabel's order or sorted (numerically if integers).

    Rows are never dropped silently, since that would change the task: a kept row with an empty, whitespace-only or
    missing text, or a missing label, is an error that counts them and names the first row (rows count from 1; a CSV
    header is not a row). So are a missing, empty or unparsable file, a missing column, a test label the train split
    does not have, a train split with one class or with about as many classes as rows (label_column names the text),
    and a split with no rows.
    """
    _check_source(train_file, test_file, hf_dataset, train_split, test_split)
    labels = tuple(str(name) for name in labels)
    if len(set(labels)) != len(labels):
        raise DataError(f"labels names a label twice: {','.join(labels)}")

    if train_file:
        train, test = _read_file("train file", train_file, hf_dataset), _read_file("test file", test_file, hf_dataset)
    else:
        train, test = (
            _load_hf("train split", hf_dataset, hf_config, train_split),
            _load_hf("test split", hf_dataset, hf_config, test_split),
        )
    train_texts, train_names, class_label_order, every_name = _texts_and_labels(*train, text_column, label_column, labels)
    seen = set(train_names)
    label_names = _label_names(train[1], seen, labels, class_label_order, every_name, len(train_names))

    test_texts, test_names, _, _ = _texts_and_labels(*test, text_column, label_column, labels)
    _check_test_labels(test[1], test_names, seen, label_names, labels)

    class_id = {name: i for i, name in enumerate(label_names)}
    source = _describe_source(train_file, test_file, hf_dataset, hf_config, train_split, test_split, text_column, label_column, labels)
    return LabelledData(
        train_texts=train_texts,
        train_labels=np.array([class_id[name] for name in train_names], dtype=np.int64),
        test_texts=test_texts,
        test_labels=np.array([class_id[name] for name in test_names], dtype=np.int64),
        label_names=label_names,
        source=source,
    )


@dataclass
class LabelledFile:
    """One file's texts with class ids, in file order; class id i is label_names[i]."""

    texts: list[str]
    labels: np.ndarray  # int64 class ids
    label_names: list[str]  # class id -> label name (as a string)


def load_labelled_file(file: str, text_column: str = "text", label_column: str = "label", labels: tuple[str, ...] = ()) -> LabelledFile:
    """Read one labelled file (CSV, JSON Lines / JSON or Parquet) with load_labelled's checks, for evaluation alone.

    `labels` keeps only the rows with those labels and fixes the class order; else the classes are the
    file's labels, sorted (numerically if integers). A DataError names the problem in one line.
    """
    labels = tuple(str(name) for name in labels)
    if len(set(labels)) != len(labels):
        raise DataError(f"labels names a label twice: {','.join(labels)}")
    rows, where = _read_file("labelled file", file)
    texts, names, class_label_order, every_name = _texts_and_labels(rows, where, text_column, label_column, labels)
    label_names = _label_names(where, set(names), labels, class_label_order, every_name, len(names))
    class_id = {name: i for i, name in enumerate(label_names)}
    return LabelledFile(texts, np.array([class_id[name] for name in names], dtype=np.int64), label_names)


def _check_source(train_file: str, test_file: str, hf_dataset: str, train_split: str, test_split: str) -> None:
    """Raise DataError unless exactly one source is given: two files (with a format at most), or a dataset."""
    if bool(train_file) != bool(test_file):
        raise DataError("give both train_file and test_file (or neither, and hf_dataset)")
    if not (train_file or hf_dataset):
        raise DataError("no labelled data: give train_file and test_file, or hf_dataset")
    if train_file and hf_dataset not in ("", *FORMATS.values()):
        raise DataError(
            f"give train_file and test_file or hf_dataset={hf_dataset}, not both (with files, hf_dataset can only be csv, json or parquet)"
        )
    if not train_file and hf_dataset in FORMATS.values():
        raise DataError(f"hf_dataset={hf_dataset} reads files: give them as train_file and test_file")
    if train_file and (train_split, test_split) != ("train", "test"):
        raise DataError("train_split and test_split choose splits of hf_dataset; with train_file and test_file, the files are the splits")


def _check_test_labels(where: str, test_names: list, seen: set, label_names: list, labels: tuple) -> None:
    """Raise DataError if the test split has a label the train split lacks, or no rows at all."""
    if unseen := Counter(name for name in test_names if name not in seen):
        shown = ", ".join(f"{_short(name, 20)} ({count} rows)" for name, count in unseen.most_common(3))
        more = f" and {len(unseen) - 3:,} more" if len(unseen) > 3 else ""
        shared = ",".join(label_names)
        hint = f"labels={shared}" if len(shared) <= 60 else "labels"  # a long list to copy would bury the message
        raise DataError(f"{where} has labels the train split never saw: {shown}{more}; keep the shared ones with {hint}")
    if not test_names:
        raise DataError(f"{where} has no rows with the labels {','.join(labels)}")


def _label_names(where: str, seen: set, labels: tuple, class_label_order: list | None, every_name: set, rows: int) -> list:
    """The class names in class-id order: `labels` as given, else the ClassLabel's order, else sorted."""
    if missing := [name for name in labels if name not in every_name]:
        hint = _did_you_mean(missing[0], every_name)
        raise DataError(f"{where} has no label {_short(missing[0])}{hint}; its labels are {_listed(sorted(every_name))}")
    if labels:
        label_names = list(labels)
    elif class_label_order:
        label_names = [name for name in class_label_order if name in seen]
    else:
        numeric = all(INTEGER.fullmatch(name) for name in seen)
        label_names = sorted(seen, key=lambda name: (int(name), name) if numeric else (0, name))
    if len(label_names) < 2:
        only = _short(label_names[0])
        raise DataError(f"{where} has only one class, {only}: a classifier needs two or more (check label_column, labels)")
    # Under two rows a class on average, nothing can be learnt: the label column is the text or an id.
    if not labels and len(label_names) > 10 and 2 * len(label_names) > rows:
        raise DataError(f"{where} has {len(label_names):,} distinct labels in {rows:,} rows: is label_column the text or an id?")
    return label_names


def _describe_source(train_file, test_file, hf_dataset, hf_config, train_split, test_split, text_column, label_column, labels) -> str:
    """The data's source as the run records it; file paths as core.paths.recorded_path writes them."""
    if train_file:
        files = f"train={recorded_path(train_file)} test={recorded_path(test_file)}"
        parts = ["files:", hf_dataset and f"format={hf_dataset}", files]
    else:
        parts = ["hf:", hf_dataset, hf_config, f"train={train_split} test={test_split}"]
    parts += [f"text={text_column} label={label_column}", labels and f"labels={','.join(labels)}"]
    return " ".join(p for p in parts if p)


def _read_file(role: str, file: str, file_format: str = ""):
    """(the rows of a CSV, JSON or Parquet file as a datasets.Dataset, "train file x.csv" for messages)."""
    import datasets

    where = f"{role} {file}"
    if not os.path.isfile(file):
        raise DataError(f"{where} not found")
    if os.path.getsize(file) == 0:
        raise DataError(f"{where} is empty")
    file_format = file_format or FORMATS.get(os.path.splitext(file)[1].lower())
    if file_format is None:
        raise DataError(f"{where}: unknown format; use a .csv, .jsonl, .json or .parquet file, or name the format with hf_dataset")
    options, explain = {}, None
    if file_format == "csv":
        header = _csv_header(file, where)
        # Every cell as the text it is: by default pandas turns "NA", "null" or "" into missing values
        # and guesses number types chunk by chunk.
        options = {"features": datasets.Features({name: datasets.Value("string") for name in header}), "keep_default_na": False}
        explain = functools.partial(_separator_hint, header)
    elif file_format == "json":
        explain = functools.partial(_json_problem, file)
    return _checked_load(functools.partial(getattr(datasets.Dataset, f"from_{file_format}"), file, **options), where, explain)


def _load_hf(role: str, name: str, config: str | None, split: str):
    """(a split of a Hugging Face dataset, "train split 'train' of name" for messages)."""
    import datasets

    where = f"{role} {split!r} of {name}" + (f" ({config})" if config else "")
    return _checked_load(functools.partial(datasets.load_dataset, name, config, split=split), where)


def _checked_load(load, where: str, explain=None):
    """(load(), where), with datasets' errors and an empty split as DataErrors. explain(error) may
    say what is wrong with the file better than the error does, or add a hint to its message."""
    import datasets

    datasets.disable_progress_bars()  # a bar per split of a 3 MB file is noise in the run's log
    try:
        with _builder_errors_unlogged():
            rows = load()
    except StopIteration:  # how the json reader says that a file is empty
        raise DataError(f"{where} has no rows") from None
    except Exception as e:  # hub, network and parser errors come in many types
        if "corresponds to no data" in str(e):  # how datasets says that a split or slice is empty
            raise DataError(f"{where} has no rows") from None
        raise DataError(f"could not load {where}: {explain(e) if explain else _innermost(e)}") from None
    if len(rows) == 0:
        raise DataError(f"{where} has no rows")
    return rows, where


@contextlib.contextmanager
def _builder_errors_unlogged():
    """Drop the error lines that datasets' file readers log before raising: the DataError says the
    same in one line, and a second, longer line about the same file reads like a second problem."""
    quiet = logging.Filter()
    quiet.filter = lambda record: record.levelno < logging.ERROR
    loggers = [logging.getLogger(f"datasets.packaged_modules.{name}.{name}") for name in ("csv", "json", "parquet")]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _innermost(error: BaseException) -> str:
    """The first line of the innermost message in the error's chain of causes: datasets wraps the
    parser's error ("Expected 2 fields in line 3, saw 3") in "An error occurred while generating the dataset"."""
    message, seen = "", set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        message = str(error).strip().split("\n")[0].strip() or message or type(error).__name__
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return _cut(message, 160)


def _csv_header(file: str, where: str) -> list:
    """The column names in a CSV file's first line."""
    try:
        with open(file, encoding="utf-8-sig", newline="") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read the header of {where}: {_cut(str(e), 120)}") from None


def _separator_hint(columns: list, error: BaseException | None = None) -> str:
    """The error's cause (if given) and, when the header looks split by ';' or tabs, that the file
    must use commas: such a file reads as one column, or fails on the first text with a comma."""
    separator = next((sep for sep in (";", "\t") if any(sep in name for name in columns)), None)
    hint = f"is the file separated by {separator!r}? CSV files must be separated by commas" if separator else ""
    if error is None:
        return hint
    cause = _innermost(error)
    if not hint and "Expected" in cause and "fields" in cause:
        hint = "put quotes around fields that contain commas"
    return f"{cause}; {hint}" if hint else cause


def _json_problem(file: str, error: BaseException) -> str:
    """The first line of a JSON file that Python's json cannot parse (with the line and column, which
    the Arrow reader's message lacks), or an integer too large for it; else the error's cause."""
    try:
        with open(file, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        return _cut(str(e), 160)
    try:
        documents = [(None, json.loads(text))]
    except json.JSONDecodeError as e:
        if text.lstrip().startswith("["):  # one JSON document: its own line and column are right
            return f"line {e.lineno}, column {e.colno}: {e.msg}"
        documents = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                if line.strip():
                    documents.append((number, json.loads(line)))
            except json.JSONDecodeError as e:
                return f"line {number}, column {e.colno}: {e.msg} (each line must be one JSON object)"
    for number, document in documents:
        for record in document if isinstance(document, list) else [document]:
            for value in record.values() if isinstance(record, dict) else ():
                if isinstance(value, int) and not -(2**63) <= value < 2**64:  # the reader's 64-bit integers
                    at = f"line {number}: " if number else ""
                    return f"{at}the integer {_cut(str(value), 30)} is too large to read; write it as a string"
    return _innermost(error)


def _texts_and_labels(rows, where: str, text_column: str, label_column: str, keep: tuple[str, ...]):
    """(texts, label names, the label column's ClassLabel names or None, the set of every label)
    of the rows whose label is in `keep` (all rows if it is empty), after checking that every one
    of them has a text and a label."""
    import datasets

    for column, option in ((text_column, "text_column"), (label_column, "label_column")):
        if column not in rows.column_names:
            hint = _separator_hint(rows.column_names) or f"choose with {option}"
            raise DataError(
                f"{where} has no column {_short(column)}{_did_you_mean(column, rows.column_names)}; "
                f"its columns are {_listed(rows.column_names)} ({hint})"
            )
    texts, values = _values(rows, text_column), _values(rows, label_column)
    feature = rows.features[label_column]
    class_names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    if class_names:  # ClassLabel ids; -1 marks a row without a label (GLUE's test splits)
        names = [class_names[v] if v is not None and v >= 0 else None for v in values]
    else:
        names = _names(values, where, label_column)

    kept = [i for i, name in enumerate(names) if name in keep] if keep else range(len(names))
    if unlabelled := [i for i in kept if names[i] is None]:
        raise DataError(f"{where}: {len(unlabelled)} rows have no label in column {label_column!r}, the first is row {unlabelled[0] + 1}")
    if not_text := [i for i in kept if texts[i] is not None and not isinstance(texts[i], str)]:
        kind = type(texts[not_text[0]]).__name__
        raise DataError(f"{where}: column {text_column!r} holds {kind} values, not text (the first in row {not_text[0] + 1})")
    if empty := [i for i in kept if not (texts[i] and texts[i].strip())]:
        raise DataError(
            f"{where}: {len(empty)} rows have an empty or missing text in column {text_column!r}, "
            f"the first is row {empty[0] + 1}; fix or remove them"
        )
    return [texts[i] for i in kept], [names[i] for i in kept], class_names, set(names) - {None}


def _names(values: list, where: str, column: str) -> list:
    """The label column's values as label names (None for a missing label); DataError at the first value that is no label."""
    names = []
    for row, value in enumerate(values, 1):
        try:
            names.append(_label_name(value))
        except ValueError as e:
            raise DataError(f"{where}: row {row} has the label {_short(value)} in column {column!r}: {e}") from None
    return names


def _label_name(value) -> str | None:
    """A label value as the string that labels are compared by, None for a missing one; ValueError
    saying why for a value that cannot be a class."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int, which bool is; spelled as in JSON and Arrow
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):  # pandas' missing value
            return None
        if not value.is_integer():  # False for infinities too
            raise ValueError("not a whole number; labels must be strings or integers")
        # From 2**53 on, floats skip integers: the JSON reader turns 2**64 and 2**64+1 into one float.
        if abs(value) >= 2**53:
            raise ValueError("an integer too large to read exactly (it became a float); write the labels as strings")
        return str(int(value))  # 1.0 is "1": a column of integers with gaps, or mixed with floats, holds floats
    raise ValueError(f"a {type(value).__name__}; labels must be strings or integers (check label_column)")


def _values(rows, column: str) -> list:
    """A column as Python values: read from Arrow for plain types (ten times faster than datasets'
    rows), decoded by datasets for the others (a Json column of mixed types is stored as JSON text)."""
    import datasets

    if isinstance(rows.features[column], datasets.Value | datasets.ClassLabel):  # ClassLabel: the int ids
        return rows.with_format("arrow")[column].to_pylist()
    return list(rows[column])


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listed(names, most: int = 5) -> str:
    """The first `most` names, shortened, and how many more: a column of texts read as labels has thousands."""
    more = f", ... and {len(names) - most:,} more" if len(names) > most else ""
    return ", ".join(_short(name, 24) for name in names[:most]) + more


def _short(value, most: int = 30) -> str:
    """repr(value), cut to about `most` characters."""
    return _cut(repr(value), most)


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."
