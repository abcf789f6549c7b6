"""kill -9 of ``featurelite serve`` in the middle of pushes (issue 10): after reopening the
store in Python, every push the server acknowledged is there, and no push is there in
part (each push's rows are all present or none is)."""

from __future__ import annotations

import signal
import threading
import time

import httpx
from test_server import rows
from test_server_hardening import launch

import featurelite as fl

BATCH_ROWS = 40


def test_kill_9_during_pushes_keeps_every_acknowledged_push_and_no_partial_one(tmp_path):
    acknowledged: list[int] = []
    sent: list[int] = []
    stop = threading.Event()
    with launch(tmp_path, expect_clean_exit=False) as server:
        def pusher(first: int) -> None:
            batch = first
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    batch += 2  # two pushers: odd and even batch numbers
                    sent.append(batch)
                    try:
                        response = client.post(server.url + "/push", json={
                            "view": "stats", "rows": rows(batch, range(batch, batch + BATCH_ROWS), batch)})
                    except httpx.TransportError:
                        return  # the server is gone
                    if response.status_code == 200:
                        acknowledged.append(batch)

        threads = [threading.Thread(target=pusher, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        server.proc.send_signal(signal.SIGKILL)
        assert server.proc.wait(timeout=30) == -signal.SIGKILL
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert len(acknowledged) > 5, acknowledged
    with fl.open(server.path, read_only=True) as store:
        counts = dict(store.con.sql("SELECT batch, count(*) FROM fl_history__stats GROUP BY batch").fetchall())
        online = store.get_online_features([{"user_id": k} for k in range(max(acknowledged) + BATCH_ROWS)],
                                           ["stats:version"]).to_dict()["version"]
    assert set(acknowledged) <= set(counts)  # every acknowledged push is there
    assert set(counts) <= set(sent)
    assert all(n == BATCH_ROWS for n in counts.values()), counts  # and none is there in part
    # the online values agree with the history that survived: each key's newest batch
    for key, version in enumerate(online):
        newest = max((b for b in counts if b <= key < b + BATCH_ROWS), default=None)
        assert version == newest, (key, version, newest)
