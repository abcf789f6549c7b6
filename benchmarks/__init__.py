"""featurelite's benchmark suite: featurelite measured side by side with its limit
(hand-written DuckDB SQL, a plain Python dict) on seeded data.

Run ``python -m benchmarks run --quick`` (tiny scale, seconds; what CI runs to keep the
suite working) or ``python -m benchmarks run --full`` (the real scale; writes
``benchmarks/results/latest.json`` and regenerates ``docs/benchmarks.md``). See
``benchmarks/README.md``.
"""
