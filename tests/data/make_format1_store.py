"""Writes ``format1-featurelite-0.1.0.duckdb`` with the featurelite of another source tree.

    python tests/data/make_format1_store.py TREE OUT.duckdb && gzip -9 OUT.duckdb

``TREE`` is a checkout of the version whose format the file should have (the committed
file came from commit 26c6508). The editable install's import hook is removed first so that
``TREE``'s featurelite is the one imported. The online table is left lagging its history
(a small push while the index served, then the connection closed without the catch-up
``close()`` does), so that state is in the file too.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta


def main(tree: str, out: str) -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__name__.lower()]
    sys.path.insert(0, tree)
    import pyarrow as pa

    import featurelite as fl

    assert fl.__file__.startswith(tree), fl.__file__
    t0 = datetime(2024, 5, 1)
    user = fl.Entity("user", join_keys=["user_id"])
    stats = fl.FeatureView(
        "stats", entities=[user], schema={"spend": "float64", "n": "int32", "tag": "string"},
        timestamp_field="ts", created_timestamp_field="created", ttl="2d",
    )

    @fl.featurizer
    def per_order(spend: float, n: int) -> float:
        return spend / n if n else 0.0

    shares = fl.OnDemandFeatureView("shares", sources=[stats], featurizers={"per_order": per_order})
    store = fl.open(out)
    store.apply([user, stats, shares])
    store.ingest("stats", pa.table({
        "user_id": [1, 1, 2, 3], "spend": [10.0, 11.0, None, -0.0], "n": pa.array([2, 2, 1, 0], pa.int32()),
        "tag": ["a", "b", None, "c"], "ts": pa.array([t0, t0, t0 + timedelta(days=1), t0], pa.timestamp("us")),
        "created": pa.array([t0, None, t0, t0], pa.timestamp("us")),
    }))
    store.get_online_features([{"user_id": 1}], ["stats:spend"], now=t0)  # the index loads: the next push defers
    store.ingest("stats", pa.table({
        "user_id": [2, 4], "spend": [7.5, 1.0], "n": pa.array([3, 1], pa.int32()), "tag": ["x", "y"],
        "ts": pa.array([t0 + timedelta(days=1), t0 + timedelta(days=2)], pa.timestamp("us")),
        "created": pa.array([t0, t0], pa.timestamp("us")),
    }))
    store.con.execute("CHECKPOINT")
    store.con.close()  # not store.close(): that would bring the online table up to date


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
