"""data/labelled.py: files and loaders, label classes and order, and a one-line error for every bad input."""

import csv
import json
import logging.handlers
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.paths import recorded_path
from data.labelled import load_labelled
from data.tokenizer import DataError

TRAIN = [
    ("I love it, truly", "positive"),
    ("NA", "neutral"),  # by default pandas reads "NA" and "null" as missing values
    ("null", "negative"),
    ("2015", "neutral"),
    ('a "quoted"\nline break', "negative"),
    ("  spaced  ", "positive"),
]
TEST = [("meh", "neutral"), ("great", "positive"), ("awful", "negative")]


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    """Hugging Face's dataset cache in tmp_path, not the user's; the hub offline."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "hf" / "downloads")


def write(path, rows, columns=("text", "label")):
    """Rows of values as a CSV, JSON Lines or Parquet file, told by the extension; None is a missing value."""
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(["" if value is None else value for value in row] for row in rows)
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def load(tmp_path, train=TRAIN, test=TEST, ext="csv", columns=("text", "label"), **options):
    return load_labelled(write(tmp_path / f"train.{ext}", train, columns), write(tmp_path / f"test.{ext}", test, columns), **options)


def test_csv_keeps_text_order_and_sorts_the_classes(tmp_path):
    data = load(tmp_path)
    assert data.train_texts == [text for text, _ in TRAIN]  # "NA", "null", "2015" stay text; nothing is stripped
    assert all(type(text) is str for text in data.train_texts + data.test_texts)
    assert data.label_names == ["negative", "neutral", "positive"]
    assert data.train_labels.dtype == np.int64 and data.train_labels.tolist() == [2, 1, 0, 1, 0, 2]
    assert data.test_texts == ["meh", "great", "awful"] and data.test_labels.tolist() == [1, 2, 0]
    train, test = (recorded_path(tmp_path / name) for name in ("train.csv", "test.csv"))
    assert data.source == f"files: train={train} test={test} text=text label=label"


def test_same_data_from_csv_jsonl_and_parquet_is_equal(tmp_path):
    rows = [("one", 1), ("two", 2), ("ten", 10), ("another one", 1)]
    loaded = []
    for ext in ("csv", "jsonl", "parquet"):
        (tmp_path / ext).mkdir()
        data = load(tmp_path / ext, rows, rows[::-1], ext=ext)  # ints in JSON and Parquet, text in CSV
        loaded.append((data.train_texts, data.train_labels.tolist(), data.test_texts, data.test_labels.tolist(), data.label_names))
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0][4] == ["1", "2", "10"]  # integer labels sort as numbers


def test_labels_keep_a_subset_in_the_given_order(tmp_path):
    data = load(tmp_path, labels=("positive", "negative"))
    assert data.label_names == ["positive", "negative"]
    assert data.train_texts == ["I love it, truly", "null", 'a "quoted"\nline break', "  spaced  "]
    assert data.train_labels.tolist() == [0, 1, 1, 0]
    assert data.test_texts == ["great", "awful"] and data.test_labels.tolist() == [0, 1]
    assert data.source.endswith("labels=positive,negative")

    numbers = [("a", 3), ("b", 1), ("c", 2)]
    assert load(tmp_path, numbers, numbers, ext="jsonl", labels=(2, 3)).label_names == ["2", "3"]  # ints compare as strings


def test_class_label_names_and_their_order(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"), "y": datasets.ClassLabel(names=["pos", "neg", "mixed"])})
    for name, rows in (("train", {"sentence": ["good", "bad", "fine"], "y": [0, 1, 0]}), ("test", {"sentence": ["bad"], "y": [1]})):
        datasets.Dataset.from_dict(rows, features=features).to_parquet(tmp_path / f"{name}.parquet")
    data = load_labelled(str(tmp_path / "train.parquet"), str(tmp_path / "test.parquet"), text_column="sentence", label_column="y")
    assert data.label_names == ["pos", "neg"]  # the ClassLabel's order, not sorted; "mixed" is not in the train split
    assert data.train_labels.tolist() == [0, 1, 0] and data.test_labels.tolist() == [1]

    datasets.Dataset.from_dict({"sentence": ["?"], "y": [-1]}, features=features).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(DataError, match=r"1 rows have no label in column 'y', the first is row 1"):
        load_labelled(str(tmp_path / "train.parquet"), str(tmp_path / "test.parquet"), text_column="sentence", label_column="y")


def test_hugging_face_dataset_splits_and_slices(tmp_path):
    folder = tmp_path / "tweets"  # a local dataset folder: load_dataset finds the splits by file name
    folder.mkdir()
    train, test = write(folder / "train.jsonl", TRAIN), write(folder / "test.jsonl", TEST)
    data = load_labelled(hf_dataset=str(folder), train_split="train[:4]", test_split="train[4:]")
    assert data.train_texts == [text for text, _ in TRAIN[:4]] and data.test_texts == [text for text, _ in TRAIN[4:]]
    assert data.label_names == ["negative", "neutral", "positive"] and data.test_labels.tolist() == [0, 2]
    assert data.source == f"hf: {folder} train=train[:4] test=train[4:] text=text label=label"

    from_files = load_labelled(train, test)
    from_hub = load_labelled(hf_dataset=str(folder))
    assert (from_hub.train_texts, from_hub.test_texts, from_hub.label_names) == (
        from_files.train_texts,
        from_files.test_texts,
        from_files.label_names,
    )
    assert from_hub.train_labels.tolist() == from_files.train_labels.tolist()
    check_error(
        lambda: load_labelled(hf_dataset=str(folder), test_split="validation"), f"could not load test split 'validation' of {folder}"
    )


def test_hf_dataset_names_the_format_of_files(tmp_path):
    train, test = write(tmp_path / "train.jsonl", TRAIN), write(tmp_path / "test.jsonl", TEST)
    (tmp_path / "train.txt").write_bytes((tmp_path / "train.jsonl").read_bytes())
    data = load_labelled(str(tmp_path / "train.txt"), test, hf_dataset="json")
    assert data.train_texts == load_labelled(train, test).train_texts == [text for text, _ in TRAIN]
    assert data.source.startswith("files: format=json train=")
    check_error(lambda: load_labelled(str(tmp_path / "train.txt"), test, hf_dataset="parquet"), "could not load train file")


def check_error(call, *fragments):
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert len(re.sub(r"/\S+", "FILE", message)) <= 200, message  # short enough to read, but for the paths
    for fragment in fragments:
        assert fragment in message, message


def test_source_errors(tmp_path):
    train = write(tmp_path / "train.csv", TRAIN)
    check_error(lambda: load_labelled(), "no labelled data")
    check_error(lambda: load_labelled(train, train, hf_dataset="imdb"), "give train_file and test_file or hf_dataset=imdb, not both")
    check_error(lambda: load_labelled(hf_dataset="csv"), "give them as train_file and test_file")
    check_error(lambda: load_labelled(train), "give both train_file and test_file")
    check_error(lambda: load_labelled(train, train, train_split="validation"), "the files are the splits")
    check_error(lambda: load_labelled(train, str(tmp_path / "nope.csv")), f"test file {tmp_path / 'nope.csv'} not found")
    (tmp_path / "test.tsv").write_text("text\tlabel\n")
    check_error(lambda: load_labelled(train, str(tmp_path / "test.tsv")), "test.tsv: unknown format", "hf_dataset")
    check_error(lambda: load_labelled(train, train, labels=("a", "b", "a")), "labels names a label twice")
    check_error(lambda: load_labelled(hf_dataset=str(tmp_path / "no_such_folder")), "could not load train split 'train' of")


@pytest.mark.parametrize(
    "columns, options, fragments",
    [
        (("txt", "label"), {}, ["train file", "no column 'text' (did you mean 'txt'?); its columns are 'txt', 'label'", "text_column"]),
        (("text", "sentiment"), {"label_column": "sentimnet"}, ["no column 'sentimnet' (did you mean 'sentiment'?)", "label_column"]),
        (("text", "label"), {"text_column": "body"}, ["no column 'body'; its columns are 'text', 'label' (choose with text_column)"]),
    ],
)
def test_missing_column(tmp_path, columns, options, fragments):
    check_error(lambda: load(tmp_path, columns=columns, **options), *fragments)


def test_label_errors(tmp_path):
    check_error(lambda: load(tmp_path, test=[*TEST, ("?", "sarcastic"), ("!", "sarcastic")]), "'sarcastic' (2 rows)", "never saw")
    check_error(lambda: load(tmp_path, train=[("a", "neutral"), ("b", "neutral")]), "only one class, 'neutral'")
    check_error(lambda: load(tmp_path, labels=("negative",)), "only one class, 'negative'")
    check_error(lambda: load(tmp_path, labels=("negativ", "positive")), "has no label 'negativ' (did you mean 'negative'?)")
    check_error(lambda: load(tmp_path, test=[("meh", "neutral")], labels=("negative", "positive")), "test file", "no rows with the labels")
    check_error(lambda: load(tmp_path, test=[*TEST, ("x", None), ("y", " ")]), "test file", "2 rows have no label", "the first is row 4")


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
@pytest.mark.parametrize("bad", ["", "   \n", None])
def test_empty_texts_are_an_error(tmp_path, ext, bad):
    rows = [*TRAIN, (bad, "neutral"), (bad, "neutral")]
    check_error(
        lambda: load(tmp_path, rows, ext=ext), "train file", "2 rows have an empty or missing text in column 'text', the first is row 7"
    )
    assert load(tmp_path, rows, ext=ext, labels=("negative", "positive")).train_texts[-1] == "  spaced  "  # only kept rows are checked


def test_texts_must_be_text(tmp_path):
    for test in ([("meh", "neutral"), (42, "neutral")], [(42, "neutral")]):  # a mixed column (datasets' Json type) and an int64 one
        check_error(
            lambda test=test: load(tmp_path, test=test, ext="jsonl"),
            "test file",
            f"column 'text' holds int values, not text (the first in row {len(test)})",
        )


def test_empty_split(tmp_path):
    check_error(lambda: load(tmp_path, test=[]), "test file", "has no rows")
    train = write(tmp_path / "train.jsonl", TRAIN)
    (tmp_path / "empty.jsonl").write_text("")
    check_error(lambda: load_labelled(train, str(tmp_path / "empty.jsonl")), f"test file {tmp_path / 'empty.jsonl'} is empty")
    (tmp_path / "blank.jsonl").write_text("\n")
    check_error(lambda: load_labelled(train, str(tmp_path / "blank.jsonl")), "test file", "blank.jsonl has no rows")


def test_integer_labels_stay_exact(tmp_path):
    big = [("a", 2**63 - 1), ("b", 2**63 - 2), ("c", -(2**63))]  # int64 in JSON
    assert load(tmp_path, big, big, ext="jsonl").label_names == [str(-(2**63)), str(2**63 - 2), str(2**63 - 1)]
    huge = [("a", 2**64 - 1), ("b", 2**64 - 2)]
    pq.write_table(pa.table({"text": ["a", "b"], "label": pa.array([2**64 - 1, 2**64 - 2], pa.uint64())}), tmp_path / "train.parquet")
    data = load_labelled(str(tmp_path / "train.parquet"), str(tmp_path / "train.parquet"))
    assert data.label_names == [str(2**64 - 2), str(2**64 - 1)] and data.test_labels.tolist() == [1, 0]
    as_text = [("a", str(2**64)), ("b", str(2**64 + 1))]  # written as strings, any size stays exact
    assert load(tmp_path, as_text, as_text, ext="jsonl").label_names == [str(2**64), str(2**64 + 1)]
    assert load(tmp_path, huge, huge, ext="csv").label_names == [str(2**64 - 2), str(2**64 - 1)]


def test_integers_that_json_cannot_read_exactly_are_refused(tmp_path):
    # The JSON reader turns 2**64 and 2**64 + 1 into one float: refused, not merged into one class.
    huge = [("a", 2**64), ("b", 2**64 + 1)]
    check_error(
        lambda: load(tmp_path, huge, TEST, ext="jsonl"),
        "train file",
        "row 1 has the label 1.8446744073709552e+19 in column 'label': an integer too large to read exactly",
        "write the labels as strings",
    )
    mixed = [("a", 2**64), ("b", 2**64 + 1), ("c", "other")]  # a column of mixed types fails to load instead
    check_error(
        lambda: load(tmp_path, mixed, TEST, ext="jsonl"),
        "could not load train file",
        "line 1: the integer 18446744073709551616 is too large to read; write it as a string",
    )


def test_whole_floats_and_bools_are_labels(tmp_path):
    as_text = load(tmp_path, [("a", "1"), ("b", "2"), ("c", "10")], [("d", "10")]).label_names
    assert as_text == ["1", "2", "10"]
    for ext in ("jsonl", "parquet"):  # 2.0 makes the column float; pandas writes integers with gaps as floats
        assert load(tmp_path, [("a", 1), ("b", 2.0), ("c", 10)], [("d", 10.0)], ext=ext).label_names == as_text
        data = load(tmp_path, [("a", True), ("b", False), ("c", True)], [("d", False)], ext=ext)
        assert data.label_names == ["false", "true"] and data.train_labels.tolist() == [1, 0, 1]
    mixed = [("a", True), ("b", 1), ("c", "1")]  # a Json column: true is not 1, and 1 is "1"
    assert load(tmp_path, mixed, mixed, ext="jsonl").label_names == ["1", "true"]
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": [1.0, float("nan"), 0.0]}), tmp_path / "train.parquet")
    check_error(lambda: load_labelled(str(tmp_path / "train.parquet"), str(tmp_path / "train.parquet")), "1 rows have no label", "row 2")


@pytest.mark.parametrize(
    "label, shown, reason",
    [
        (["negative"], "['negative']", "a list; labels must be strings or integers"),
        ({"name": "negative"}, "{'name': 'negative'}", "a dict; labels must be strings or integers"),
        (2.5, "2.5", "not a whole number"),
        (["x" * 100], "['xxxxxxxxxxxxxxxxxxxxxxxxx...", "a list"),
    ],
)
def test_labels_that_are_no_class_are_refused(tmp_path, label, shown, reason):
    for rows, row in (([("a", "positive"), ("b", label)], 2), ([("a", label), ("b", label)], 1)):  # a mixed (Json) column, a typed one
        check_error(
            lambda rows=rows: load(tmp_path, rows, TEST, ext="jsonl"),
            "train file",
            f"row {row} has the label {shown}",
            f"in column 'label': {reason}",
        )


def test_label_column_of_texts(tmp_path):
    rows = [(f"text number {i} " + "words " * 20, "positive") for i in range(40)]
    check_error(
        lambda: load(tmp_path, rows, rows, label_column="text"), "train file", "has 40 distinct labels in 40 rows: is label_column the text"
    )
    few = [*TRAIN, *rows[:8]] * 2  # 14 classes in 28 rows: allowed, but no message lists them all
    check_error(
        lambda: load(tmp_path, few, rows, label_column="text"),
        "never saw: 'text number 8 wo... (1 rows)",
        "and 29 more; keep the shared ones with labels",
    )
    check_error(lambda: load(tmp_path, few, few, label_column="text", labels=("x", "y")), "its labels are '  spaced  '", ", ... and 9 more")


@pytest.mark.parametrize(
    "name, content, fragments",
    [
        ("ragged.csv", "text,label\na,1\nb,2,3\n", ["Error tokenizing data. C error: Expected 2 fields in line 3, saw 3", "quotes"]),
        ("semicolons.csv", "text;label\na;1\nb;2\n", ["no column 'text'; its columns are 'text;label'", "separated by ';'? CSV files"]),
        ("tabs.csv", "text\tlabel\na\t1\nb\t2\n", ["no column 'text'; its columns are 'text\\tlabel'", "separated by '\\t'?"]),
        ("commas.csv", "text;label\nhello, world;1\n", ["its columns are 'text;label' (is the file separated by ';'?"]),
        ("empty.csv", "", ["train file", "empty.csv is empty"]),
        ("broken.jsonl", '{"text": "a", "label": 1}\n{"text": "b" "label": 2}\n', ["line 2, column 14: Expecting ',' delimiter (each"]),
        ("cut.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "lab', ["line 2, column 15: Unterminated string starting at"]),
        ("broken.json", '[{"text": "a", "label": 1},\n {"text": "b" "label": 2}]', ["line 2, column 15: Expecting ',' delimiter"]),
    ],
)
def test_unreadable_files_say_why(tmp_path, name, content, fragments):
    (tmp_path / name).write_text(content)
    logged = logging.handlers.BufferingHandler(capacity=100)  # datasets' handler writes to the stderr it saw on import
    logging.getLogger("datasets").addHandler(logged)
    try:
        check_error(lambda: load_labelled(str(tmp_path / name), write(tmp_path / "test.csv", TEST)), f"{tmp_path / name}", *fragments)
    finally:
        logging.getLogger("datasets").removeHandler(logged)
    assert [record.getMessage() for record in logged.buffer] == []  # no second line about the same error
