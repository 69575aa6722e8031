"""LabelEncoder: class names to labels and one-hot rows and back, stable across runs."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from headrace.vision.labels import LabelEncoder


def test_fit_sorts_the_distinct_names():
    encoder = LabelEncoder.fit(["zebra", "ant", "zebra", "moth"])
    assert encoder.classes == ("ant", "moth", "zebra")
    assert len(encoder) == 3
    assert encoder == LabelEncoder(["ant", "moth", "zebra"])


def test_labels_are_the_same_in_a_fresh_interpreter_with_another_hash_seed():
    code = (
        "from headrace.vision.labels import LabelEncoder;"
        "print(LabelEncoder.fit(['b', 'a', 'c', 'a', 'e', 'd']).encode(['e', 'a']).tolist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert outputs == {"[4, 0]\n"}


def test_given_classes_keep_their_order():
    encoder = LabelEncoder(["neg", "pos"])
    assert encoder.encode("pos") == 1
    assert encoder.one_hot(["pos", "neg"]).tolist() == [[0, 1], [1, 0]]  # two columns


@given(st.lists(st.text(max_size=4), min_size=1, max_size=30))
def test_encode_decode_and_one_hot_round_trip(names):
    encoder = LabelEncoder.fit(names)
    labels = encoder.encode(names)
    rows = encoder.one_hot(names)

    assert labels.dtype == np.int64
    assert encoder.decode(labels) == names
    assert rows.dtype == np.float32
    assert rows.shape == (len(names), len(encoder))
    assert (rows.sum(axis=1) == 1).all()
    assert encoder.from_one_hot(rows) == names


def test_scores_decode_to_the_largest_column():
    encoder = LabelEncoder(["a", "b", "c"])
    assert encoder.from_one_hot(np.array([[0.2, 0.1, 0.7], [0.5, 0.4, 0.1]])) == ["c", "a"]


def test_one_hot_takes_a_dtype():
    assert LabelEncoder(["a", "b"]).one_hot(["b"], dtype=np.uint8).dtype == np.uint8


def test_an_unknown_name_is_named_with_the_classes():
    encoder = LabelEncoder.fit([f"c{i}" for i in range(9)])
    with pytest.raises(ValueError, match=r"'dog' is not one of the classes \['c0', .*9 in all"):
        encoder.encode(["c1", "dog"])
    with pytest.raises(ValueError, match="not one of the classes"):
        encoder.encode([["unhashable"]])


def test_bad_labels_and_rows_are_refused():
    encoder = LabelEncoder(["a", "b"])
    with pytest.raises(ValueError, match="label 2 is out of range for 2 classes"):
        encoder.decode([0, 2])
    with pytest.raises(ValueError, match="label -1"):
        encoder.decode([-1])
    with pytest.raises(ValueError, match="list of integers"):
        encoder.decode([0.5])
    with pytest.raises(ValueError, match="2 columns"):
        encoder.from_one_hot([[1, 0, 0]])
    assert encoder.decode([]) == []


def test_bad_class_lists_are_refused():
    with pytest.raises(ValueError, match="empty"):
        LabelEncoder([])
    with pytest.raises(ValueError, match="'a' is given twice"):
        LabelEncoder(["a", "b", "a"])
    with pytest.raises(TypeError, match="single name"):
        LabelEncoder("abc")
    with pytest.raises(TypeError, match="sort together"):
        LabelEncoder.fit(["a", 1])


def test_the_encoder_travels_as_json_and_pickle():
    encoder = LabelEncoder.fit(["cat", "dog", "bird"])
    assert LabelEncoder.from_dict(json.loads(json.dumps(encoder.as_dict()))) == encoder
    copy = pickle.loads(pickle.dumps(encoder))
    assert copy == encoder
    assert copy.encode("dog") == 2
    assert hash(copy) == hash(encoder)
    assert repr(LabelEncoder(range(7))) == "LabelEncoder([0, 1, 2, 3, 4, ... (7 classes)])"
