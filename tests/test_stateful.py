"""A stateful test: apply / ingest (good and bad) / read / materialize / reopen, interleaved
by Hypothesis, checked against a plain-Python model after every step."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from model import StoreModel, same, ts_array

import featurelite as fl

DAY = 86_400_000_000
EPOCH = datetime(1970, 1, 1)
NOW_US = 4 * DAY + DAY // 2
USERS = range(4)

user = fl.Entity("user", join_keys=["user_id"])


def view(with_z: bool) -> fl.FeatureView:
    schema = {"x": "float64", "s": "string"}
    if with_z:
        schema["z"] = "int32"
    return fl.FeatureView(
        "v", entities=[user], schema=schema, timestamp_field="ts", created_timestamp_field="created", ttl="2d"
    )


ROW = st.fixed_dictionaries({
    "user_id": st.sampled_from(list(USERS)),
    "x": st.sampled_from([None, 0.0, -0.0, 1.0, float("nan"), float("-inf")]),
    "s": st.sampled_from([None, "", "é", "q"]),
    "z": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    "ts": st.integers(0, 6).map(lambda d: d * DAY),
    "created": st.one_of(st.none(), st.integers(0, 2).map(lambda d: d * DAY)),
})


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "s.duckdb"
        self.model = StoreModel()
        self.online: dict[int, dict[str, Any]] = {}
        self.with_z = False

    @initialize()
    def open_and_apply(self) -> None:
        self.store = fl.open(self.path)
        result = self.store.apply([user, view(False)])
        assert {c.name for c in result.added} == {"user", "v"}
        self.model.add_view(view(False), ["user_id"])

    def teardown(self) -> None:
        self.store.close()
        self.tmp.cleanup()

    # -- model helpers ---------------------------------------------------------------

    def _better(self, new: dict[str, Any], old: dict[str, Any] | None) -> bool:
        v = self.model.views["v"]
        return old is None or self.model._order(v, new) > self.model._order(v, old)

    def _table(self, rows: list[dict[str, Any]]) -> pa.Table:
        columns = {
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            "x": pa.array([r["x"] for r in rows], pa.float64()),
            "s": pa.array([r["s"] for r in rows], pa.string()),
            "ts": ts_array([r["ts"] for r in rows]),
            "created": ts_array([r["created"] for r in rows]),
        }
        if self.with_z:
            columns["z"] = pa.array([r["z"] for r in rows], pa.int32())
        return pa.table(columns)

    def _features(self) -> list[str]:
        return ["v:x", "v:s"] + (["v:z"] if self.with_z else [])

    # -- rules ----------------------------------------------------------------------

    @rule(rows=st.lists(ROW, max_size=6))
    def ingest(self, rows: list[dict[str, Any]]) -> None:
        if not self.with_z:
            rows = [{**r, "z": None} for r in rows]
        result = self.store.ingest("v", self._table(rows))
        assert result.rows == len(rows)
        history = self.model.views["v"].rows
        before = len(history)
        self.model.ingest("v", rows)
        for row in history[before:]:
            if self._better(row, self.online.get(row["user_id"])):
                self.online[row["user_id"]] = row

    @rule(rows=st.lists(ROW, min_size=1, max_size=4), bad_row=st.integers(0, 3))
    def ingest_bad(self, rows: list[dict[str, Any]], bad_row: int) -> None:
        table = self._table(rows)
        bad = bad_row % len(rows)
        keys = table.column("user_id").to_pylist()
        keys[bad] = None
        table = table.set_column(0, "user_id", pa.array(keys, pa.int64()))
        with pytest.raises(fl.SchemaError) as info:
            self.store.ingest("v", table)
        assert info.value.row == bad and info.value.column == "user_id"

    @precondition(lambda self: not self.with_z)
    @rule()
    def add_feature(self) -> None:
        result = self.store.apply([user, view(True)])
        assert [c.name for c in result.changed] == ["v"]
        self.with_z = True
        self.model.views["v"].features.append("z")

    @rule()
    def reapply_is_unchanged(self) -> None:
        result = self.store.apply([user, view(self.with_z)])
        assert not result and len(result.unchanged) == 2

    @rule(end_day=st.one_of(st.none(), st.integers(0, 6)))
    def materialize(self, end_day: int | None) -> None:
        end = None if end_day is None else EPOCH + timedelta(days=end_day)
        self.store.materialize("v", end_date=end)
        self.online = {}
        limit = None if end_day is None else end_day * DAY
        for row in self.model.views["v"].rows:
            if (limit is None or row["ts"] <= limit) and self._better(row, self.online.get(row["user_id"])):
                self.online[row["user_id"]] = row

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = fl.open(self.path)

    @rule(day_halves=st.lists(st.integers(-1, 14), max_size=6))
    def historical_matches_model(self, day_halves: list[int]) -> None:
        times = [h * DAY // 2 for h in day_halves]
        spine = pa.table({"user_id": pa.array([u % 4 for u in range(len(times))], pa.int64()), "event_timestamp": ts_array(times)})
        result = self.store.get_historical_features(spine, self._features())
        for i, t in enumerate(times):
            best, _ = self.model.lookup("v", (i % 4,), t)
            for ref in self._features():
                name = ref.split(":")[1]
                want = None if best is None else best.get(name)
                assert same(result.column(name)[i].as_py(), want), (ref, i, t)

    @invariant()
    def online_matches_model(self) -> None:
        if not hasattr(self, "store"):
            return
        response = self.store.get_online_features(
            {"user_id": list(USERS)}, self._features(), now=EPOCH + timedelta(microseconds=NOW_US)
        )
        values = response.to_dict()
        ttl = self.model.views["v"].ttl_us
        for i, u in enumerate(USERS):
            row = self.online.get(u)
            if row is not None and row["ts"] > NOW_US:
                row, status = self.model.lookup("v", (u,), NOW_US)
            elif row is None:
                status = fl.Status.NOT_FOUND
            elif row["ts"] < NOW_US - ttl:
                row, status = None, fl.Status.OUTSIDE_MAX_AGE
            else:
                status = fl.Status.PRESENT
            for ref in self._features():
                name = ref.split(":")[1]
                want = None if row is None else row.get(name)
                assert same(values[name][i], want), (u, name, values[name][i], want)
                want_status = fl.Status.NULL_VALUE if status == fl.Status.PRESENT and want is None else status
                assert response.statuses[name][i] == want_status, (u, name)


StoreMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
test_store_machine = StoreMachine.TestCase
