"""kill -9 in the middle of writes (ingest, apply, materialize, checkpoint, close): the
file always opens again, and every write the process acknowledged is there, whole."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

import featurelite as fl

WRITER = textwrap.dedent("""
    import sys, numpy as np, pyarrow as pa, featurelite as fl
    from datetime import datetime, timedelta
    path, start = sys.argv[1], int(sys.argv[2])
    user = fl.Entity("user", join_keys=["user_id"])
    base = fl.FeatureView("base", entities=[user], schema={"spend": "float64"}, timestamp_field="ts")
    t0 = datetime(2024, 5, 1)
    store = fl.open(path)
    store.apply([user, base])
    n = start
    while True:
        n += 1
        ids = np.arange(n * 100, n * 100 + 100)
        store.ingest("base", pa.table({
            "user_id": ids, "spend": np.full(100, float(n)),
            "ts": pa.array([t0 + timedelta(seconds=n)] * 100, pa.timestamp("us")),
        }))
        print(f"batch {n}", flush=True)
        step = n % 4
        if step == 0:
            view = fl.FeatureView(f"v{n}", entities=[user], schema={"x": "int64"}, timestamp_field="ts")
            store.apply([user, view])
            print(f"view v{n}", flush=True)
        elif step == 1:
            store.materialize(["base"])
        elif step == 2:
            store.checkpoint()
        else:
            store.close()
            store = fl.open(path)
""")


@pytest.mark.parametrize("seed", range(6))
def test_kill_9_during_writes_loses_nothing_acknowledged(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "shop.duckdb"
    rng = random.Random(seed)
    acknowledged: list[int] = []
    views: list[str] = []
    for round_ in range(2):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(round_ * 10_000)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert writer.stdout is not None
        try:
            deadline = time.monotonic() + 60
            wanted = rng.randint(3, 12)  # kill after this many acknowledged batches, at a random moment
            count = 0
            while count < wanted and time.monotonic() < deadline:
                line = writer.stdout.readline()
                if not line:
                    pytest.fail(f"the writer died on its own: {writer.stderr.read() if writer.stderr else ''}")
                kind, value = line.split()
                if kind == "batch":
                    acknowledged.append(int(value))
                    count += 1
                else:
                    views.append(value)
            time.sleep(rng.random() * 0.05)
            writer.send_signal(signal.SIGKILL)
            # Lines written before the kill are acknowledgements too.
            rest = writer.communicate(timeout=60)[0]
            for line in rest.splitlines():
                kind, value = line.split()
                if kind == "batch":
                    acknowledged.append(int(value))
                else:
                    views.append(value)
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    with fl.open(path) as store:
        names = {v.name for v in store.list_feature_views()}
        assert set(views) <= names
        rows = store.con.execute('SELECT spend, count(*) FROM "fl_history__base" GROUP BY spend').fetchall()
        counts = {int(spend): count for spend, count in rows}
        assert all(count == 100 for count in counts.values()), "a batch landed partly"
        assert set(acknowledged) <= set(counts), "an acknowledged batch is missing"
        online = store.get_online_features(
            {"user_id": [n * 100 for n in acknowledged]}, ["base:spend"], now=datetime(2030, 1, 1)
        ).to_dict()["spend"]
        assert online == [float(n) for n in acknowledged]
