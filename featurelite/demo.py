"""The end-to-end example: ``python -m featurelite.demo [STORE]``.

Generates a small shop dataset, defines an entity, a feature view with a write-time
featurizer and an on-demand view with a request-time one, and a feature service that pins
the versions a model reads; ingests the events, builds a point-in-time training set through
the service (it carries a manifest of what it was built from), reads online values through
that manifest and checks the featurizers' two paths agree, printing each step. With no
argument the store lives in memory; pass a file path to keep it.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa

import featurelite as fl

__all__ = ["DAYS", "definitions", "example_events", "example_spine", "main"]

#: The example events span the DAYS days up to the time they are generated (by default
#: now): the view's ttl is 30 days, so with data fixed in the past every online read would
#: come back empty once a month had passed. The values are the same on every run (seeded);
#: only their timestamps follow the clock.
DAYS = 60


def _end(end: datetime | None) -> datetime:
    """``end`` (default: now, to the second) as an aware UTC time."""
    moment = datetime.now(timezone.utc).replace(microsecond=0) if end is None else end
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _timestamps(offsets_s: np.ndarray, end: datetime) -> pa.Array:
    """Times ``offsets_s`` seconds after the start of the window that ends at ``end``."""
    start_us = int((end - timedelta(days=DAYS)).timestamp()) * 1_000_000
    return pa.array(start_us + offsets_s.astype(np.int64) * 1_000_000, pa.timestamp("us", tz="UTC"))


def example_events(users: int = 1_000, events: int = 20_000, seed: int = 7, *, end: datetime | None = None) -> pa.Table:
    """Seeded purchase-summary events for ``users`` users over the :data:`DAYS` days up
    to ``end`` (default: now)."""
    end = _end(end)
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, DAYS * 24 * 3600, events)
    return pa.table({
        "user_id": rng.integers(0, users, events),
        "spend_7d": np.round(rng.gamma(2.0, 40.0, events), 2),
        "orders_7d": rng.integers(0, 12, events),
        "country": pa.array(rng.choice(["de", "fr", "us", "jp"], events)),
        "ts": _timestamps(offsets, end),
    })


def example_spine(users: int = 1_000, rows: int = 5, seed: int = 11, *, end: datetime | None = None) -> pa.Table:
    """An entity dataframe: which users to label, when (within the :data:`DAYS` days up to
    ``end``, default now), and the basket each checkout had (request data, for the
    on-demand feature)."""
    end = _end(end)
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, DAYS * 24 * 3600, rows)
    return pa.table({
        "user_id": rng.integers(0, users, rows),
        "event_timestamp": _timestamps(offsets, end),
        "basket": np.round(rng.gamma(2.0, 15.0, rows), 2),
        "label": rng.integers(0, 2, rows),
    })


@fl.featurizer
def spend_per_order(spend_7d: float, orders_7d: int) -> float:
    """Derived at ingest: stored in history and online with the raw features."""
    return spend_7d / orders_7d if orders_7d > 0 else 0.0


@fl.featurizer
def basket_share(basket: float, spend_7d: float = 0.0) -> float:
    """Computed per request from the stored spend and the basket in the request."""
    return basket / (basket + spend_7d)


def definitions() -> list[fl.Entity | fl.FeatureView | fl.OnDemandFeatureView]:
    """The demo's entity, feature view (with a write-time featurizer and a windowed
    aggregation) and on-demand view."""
    user = fl.Entity("user", join_keys=["user_id"], description="A customer of the shop")
    stats = fl.FeatureView(
        "user_stats",
        entities=[user],
        timestamp_field="ts",
        # Per-feature metadata (fl.Field) is what search, `featurelite list` and the web UI show.
        schema={
            "spend_7d": fl.Field("float64", description="Total spend of the user in the last seven days, in euros",
                                 tags={"unit": "EUR"}),
            "orders_7d": fl.Field("int64", description="Orders the user placed in the last seven days"),
            "country": fl.Field("string", description="Shipping country of the user's latest order (ISO 3166)",
                                tags={"pii": "yes"}),
        },
        ttl="30d",
        description="7-day spend per user",
        tags={"team": "growth"},
        featurizers={"spend_per_order": spend_per_order},
        # Computed by the store from the events, exact as of each read: the highest 7-day
        # spend reported in the last 30 days.
        aggregations=[fl.Aggregation("spend_7d", "max", "30d")],
    )
    basket = fl.RequestSource("checkout", schema={"basket": "float64"})
    shares = fl.OnDemandFeatureView("shares", sources=[stats, basket], featurizers={"basket_share": basket_share})
    return [user, stats, shares]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else ":memory:"
    end = _end(None)  # one clock reading for the events, the spine and the online read
    with fl.open(path) as store:
        # The features a model reads, as a feature service: applying it pins their versions.
        checkout = fl.FeatureService("checkout", [
            "user_stats:spend_7d", "user_stats:spend_per_order", "user_stats:spend_7d_max_30d", "user_stats:country",
            "shares:basket_share",
        ])
        plan = store.apply([*definitions(), checkout])
        print(f"apply: added {[c.name for c in plan.added]}, unchanged {[c.name for c in plan.unchanged]}")
        result = store.ingest("user_stats", example_events(end=end))
        print(f"ingest: {result.rows} history rows into {result.view!r} (spend_per_order computed on the way in)")
        spine = example_spine(end=end)
        train = store.get_historical_features(spine, service="checkout")
        print("training set (point-in-time correct), through feature service 'checkout':")
        print(_text_table(train))
        manifest = fl.Manifest.from_table(train)
        print(f"its manifest: {manifest.rows} rows, digest {manifest.digest}, pinned versions {dict(manifest.pins)}")
        users = spine.column("user_id").to_pylist()[:3]
        online = store.get_online_features(  # served exactly what the training set was built from
            [{"user_id": u} for u in users], manifest=manifest, request_data={"basket": [25.0] * len(users)}, now=end,
        )
        print(f"online values now ({end.isoformat()}):", online.to_dict())
        print("statuses:", online.statuses)
        for check in store.verify(examples=500):
            verdict = "same bits in both paths" if check.ok else f"MISMATCH {check.mismatch}"
            print(f"verify {check.view}:{','.join(check.features)} ({check.examples} examples): {verdict}")
    return 0


def _text_table(table: pa.Table) -> str:
    """A few rows as aligned text (the demo prints five; pandas is not needed)."""
    rows = [[str(v) for v in row.values()] for row in table.to_pylist()]
    header = table.column_names
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
