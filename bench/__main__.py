"""`python -m bench`: run the benchmark families, print the table, write bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import history, load, media, process, quotas, reply, voice
from bench.results import Figure, machine, table, write_results
from bench.world import bench_world


async def through_the_bot(quick: bool) -> list[Figure]:
    """The per-reply and load figures share one bot process (one world, one start)."""
    with tempfile.TemporaryDirectory() as folder:
        channels = max(6, *load.widths(quick))
        async with bench_world(Path(folder), channels=channels, users=50) as bench:
            return await reply.run_in(bench, quick) + await load.run_in(bench, quick)


# Families run in this order; each is `run(quick) -> list[Figure]` (sync, or async for the bot ones).
FAMILIES: dict[str, Callable[[bool], Any]] = {
    "process": process.run,
    "bot": through_the_bot,
    "history": history.run,
    "quotas": quotas.run,
    "media": media.run,
    "voice": voice.run,
    "conversations": load.conversations_memory,
}
RESULTS = Path(__file__).resolve().parent / "results.json"


def run_family(name: str, quick: bool) -> list[Figure]:
    runner = FAMILIES[name]
    started = time.monotonic()
    try:
        outcome = runner(quick)
        figures: list[Figure] = asyncio.run(outcome) if inspect.isawaitable(outcome) else outcome
    except Exception as exc:  # one broken family must not hide the others' figures
        figures = [Figure(name, "", f"the {name} family", na=f"failed: {type(exc).__name__}: {exc}")]
    print(f"  {name}: {len(figures)} figures in {time.monotonic() - started:.1f} s", flush=True)
    return figures


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Concord's benchmark figures.")
    parser.add_argument("--quick", action="store_true", help="fewer runs and sizes (under a minute)")
    parser.add_argument("--only", action="append", choices=sorted(FAMILIES), help="run only these families")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR)
    names = args.only or list(FAMILIES)
    mode = "quick" if args.quick else "full"
    info = machine()
    print(f"Concord bench ({mode}) on {info['cores']} cores, {info['cpu_model']}, Python {info['python']}")
    started = time.monotonic()
    figures = [figure for name in names for figure in run_family(name, args.quick)]
    elapsed = time.monotonic() - started
    print()
    print(table(figures))
    write_results(args.out, figures, mode=mode, seconds=elapsed)
    print(f"\n{len(figures)} figures in {elapsed:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
