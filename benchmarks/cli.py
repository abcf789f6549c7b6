"""Command line: ``python -m benchmarks run --quick|--full``, ``python -m benchmarks compare`` and
``python -m benchmarks render``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .compare import main as compare_main
from .config import DOCS_PAGE, FULL_RESULTS, QUICK_RESULTS, REPO, SCALES, SEED, WORK_DIR
from .render import render, summary_lines
from .runner import ONLY, run

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run the suite")
    scale = run_cmd.add_mutually_exclusive_group(required=True)
    scale.add_argument(
        "--quick",
        dest="scale",
        action="store_const",
        const="quick",
        help=f"tiny scale, seconds; JSON to {QUICK_RESULTS.relative_to(QUICK_RESULTS.parents[2])}, docs untouched",
    )
    scale.add_argument(
        "--full",
        dest="scale",
        action="store_const",
        const="full",
        help="real scale, minutes; JSON to benchmarks/results/latest.json and docs/benchmarks.md",
    )
    run_cmd.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    run_cmd.add_argument("--output", type=Path, help="where to write the results JSON")
    run_cmd.add_argument("--keep-work", action="store_true", help="keep the working DuckDB files")
    run_cmd.add_argument(
        "--feast", action=argparse.BooleanOptionalAction, default=None,
        help="also run Feast 0.67 on the same data (default: with --full only; installs it into its own venv "
        "under benchmarks/work/)",
    )
    run_cmd.add_argument(
        "--only", choices=sorted(ONLY),
        help="run only this group of workloads (JSON to benchmarks/work/only-NAME-SCALE.json unless --output; "
        "docs untouched)",
    )
    compare_cmd = commands.add_parser("compare", help="compare a run with earlier committed runs, ratio by ratio")
    compare_cmd.add_argument("--before", nargs="+", required=True, help="git revisions with committed full results")
    compare_cmd.add_argument("--after", type=Path, default=FULL_RESULTS, help="the results JSON to compare")
    render_cmd = commands.add_parser("render", help="regenerate docs/benchmarks.md from a results JSON")
    render_cmd.add_argument("--input", type=Path, default=FULL_RESULTS)
    render_cmd.add_argument("--output", type=Path, default=DOCS_PAGE)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(args_list)
    if args.command == "compare":
        print(compare_main(args.before, args.after))
        return 0
    if args.command == "render":
        source = args.input.resolve().relative_to(REPO) if args.input.resolve().is_relative_to(REPO) else args.input
        args.output.write_text(render(json.loads(args.input.read_text()), str(source)))
        return 0
    full = args.scale == "full"
    default = FULL_RESULTS if full else QUICK_RESULTS
    if args.only:  # a part of the suite: never the published results or docs
        default = WORK_DIR / f"only-{args.only}-{args.scale}.json"
    results = run(
        SCALES[args.scale],
        seed=args.seed,
        output=args.output or default,
        docs=DOCS_PAGE if full and not args.only else None,
        command=" ".join(["python -m benchmarks", *args_list]),
        keep_work=args.keep_work,
        feast=full if args.feast is None else args.feast,
        only=args.only,
    )
    print("\n".join(summary_lines(results)))
    return 0
