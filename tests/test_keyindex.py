"""The online index's key maps against a plain dict: growth, collisions, negative and
extreme keys, and keys of the wrong type."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from featurelite.keyindex import DictKeyIndex, IntKeyIndex

KEYS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-40, 40), st.sampled_from([0, -1, 2**63 - 1, -(2**63)]))


@given(st.lists(st.lists(KEYS, max_size=60), max_size=8), st.lists(KEYS, max_size=40))
def test_int_key_index_matches_a_dict(batches, probes):
    index = IntKeyIndex(capacity=2)  # tiny, so it has to grow
    model: dict[int, int] = {}
    for batch in batches:
        distinct = list(dict.fromkeys(batch))
        before = len(model)
        rows, added = index.add_missing(np.array(distinct, dtype=np.int64), before)
        for key in distinct:
            model.setdefault(key, len(model))
        assert added == len(model) - before
        assert rows.tolist() == [model[k] for k in distinct]
        assert len(index) == len(model)
    for key in probes + list(model):
        assert index.get(key) == model.get(key)
        assert index.get(np.int64(key)) == model.get(key)
    assert index.get_many(probes).tolist() == [model.get(k, -1) for k in probes]
    assert (index.rows >= 0).sum() * 2 <= len(index.rows)  # load factor kept at or under 1/2


def test_int_key_index_refuses_keys_of_other_types():
    index = IntKeyIndex()
    index.add_missing(np.array([1, 42], dtype=np.int64), 0)
    assert index.get(True) is None and index.get("42") is None and index.get(42.0) is None
    assert index.get_many(["42", 1, None]).tolist() == [-1, 0, -1]
    assert index.get(2**80) is None


@given(st.lists(st.lists(st.tuples(st.sampled_from(["a", "b", ""]), st.integers(-3, 3)), max_size=20), max_size=5))
def test_dict_key_index_matches_a_dict(batches):
    index = DictKeyIndex()
    model: dict[tuple, int] = {}
    for batch in batches:
        distinct = list(dict.fromkeys(batch))
        rows, _ = index.add_missing(distinct, len(model))
        for key in distinct:
            model.setdefault(key, len(model))
        assert rows.tolist() == [model[k] for k in distinct]
    assert index.get_many([*model, ("z", 0)]).tolist() == [*model.values(), -1]
    assert index.get(["unhashable"]) is None
