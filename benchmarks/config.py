"""Scales, the seed, the feature view under test and where files go."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Seed of every random stream in the suite (recorded in the results).
SEED = 20260127

#: Number of float64 features in the benchmark view.
N_FEATURES = 10
ENTITY = "user"
KEY = "user_id"
VIEW = "user_stats"
TS = "ts"
FEATURES: tuple[str, ...] = tuple(f"f{i}" for i in range(N_FEATURES))
#: ``view:feature`` references, as passed to the Store.
FEATURE_REFS: tuple[str, ...] = tuple(f"{VIEW}:{f}" for f in FEATURES)

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
WORK_DIR = ROOT / "work"
RESULTS_DIR = ROOT / "results"
FULL_RESULTS = RESULTS_DIR / "latest.json"
QUICK_RESULTS = RESULTS_DIR / "quick.json"
DOCS_PAGE = REPO / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Scale:
    """How big a run is and how many times each measurement repeats."""

    name: str
    entities: int  #: distinct join keys (online rows)
    history_rows: int  #: rows ingested into history
    spine_rows: int  #: rows of the entity dataframe for the training set
    batch_entities: int  #: entities per call in the batched online read
    latency_iterations: int  #: timed calls of the single-entity online read (per side)
    batch_iterations: int  #: timed calls of the batched online read (per side)
    warmup_iterations: int  #: untimed calls before each latency measurement
    repeats: int  #: alternating repetitions of each bulk workload (ingest, training set)
    featurizer_rows: int  #: rows of the two input columns of the batch featurizer workload
    kernel_repeats: int  #: alternating repetitions of the batch featurizer workload
    cold_start_runs: int  #: timed fresh processes per side of the cold-start workload
    http_requests: int  #: timed HTTP reads per side (all clients together)
    push_batches: int  #: 1,000-row pushes in the push workload
    agg_entities: int  #: entities of the windowed-aggregation workloads
    agg_events: int  #: events (over AGG_DAYS days) of the windowed-aggregation workloads
    agg_spine_rows: int  #: entity rows of the windowed-aggregation training set
    agg_pushes: int  #: 1,000-row pushes per side in the windowed-aggregation push comparison
    predict_iterations: int  #: timed calls per side of the MLflow model's one-row predict (services)
    replay_requests: int  #: logged one-entity reads the consistency replay replays (production)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Scale(
    name="quick",
    entities=10_000,
    history_rows=100_000,
    spine_rows=10_000,
    batch_entities=100,
    latency_iterations=2_000,
    batch_iterations=200,
    warmup_iterations=200,
    repeats=1,
    featurizer_rows=100_000,
    kernel_repeats=5,
    cold_start_runs=1,
    http_requests=600,
    push_batches=20,
    agg_entities=1_000,
    agg_events=20_000,
    agg_spine_rows=5_000,
    agg_pushes=20,
    predict_iterations=300,
    replay_requests=2_000,
)

FULL = Scale(
    name="full",
    entities=1_000_000,
    history_rows=10_000_000,
    spine_rows=1_000_000,
    batch_entities=100,
    latency_iterations=100_000,
    batch_iterations=5_000,
    warmup_iterations=5_000,
    repeats=5,
    featurizer_rows=10_000_000,
    kernel_repeats=15,
    cold_start_runs=5,
    http_requests=60_000,
    push_batches=1_000,
    agg_entities=100_000,
    agg_events=10_000_000,
    agg_spine_rows=1_000_000,
    agg_pushes=300,
    predict_iterations=10_000,
    replay_requests=100_000,
)

SCALES = {"quick": QUICK, "full": FULL}
