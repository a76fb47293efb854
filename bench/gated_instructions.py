"""Instructions per gated action, ours beside LangGraph's, counted by callgrind: a figure the machine's load does
not move, where the time and CPU of `bench.gated_action` move with it.

Each side runs in a process of its own under `valgrind --tool=callgrind`, twice: the warm-up gated actions alone,
then the warm-up and ``--runs`` more; the difference over ``--runs`` is one gated action's cost, start-up and set-up
left out. Only user-space instructions are counted: what a side spends in the kernel (LangGraph hands each SQLite
call to a thread and back) is not. Needs valgrind (`apt-get install valgrind`); each run takes minutes.

    .venv/bin/python -m bench.gated_instructions [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.gated_action import FIRST_ORDER, WARM_UP, langgraph_anchor, our_bot

SIDES = ("ours", "LangGraph")


async def run(side: str, actions: int) -> None:
    """WARM_UP + ``actions`` gated actions of one side, and nothing else measured."""
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as directory:
        folder = Path(directory)
        if side == "ours":
            async with our_bot(f"sqlite+aiosqlite:///{folder / 'aios.db'}", steps=False) as ours:
                for number in range(WARM_UP + actions):  # every order first: the same set-up for both counts
                    await ours.add_order(FIRST_ORDER + number)
                for number in range(WARM_UP + actions):
                    await ours.gated_action(FIRST_ORDER + number)
        else:
            async with langgraph_anchor(folder) as anchor:
                for number in range(WARM_UP + actions):
                    await anchor.gated_action(FIRST_ORDER + number)


def instructions(side: str, actions: int) -> int:
    """The instructions a process running ``run(side, actions)`` executed, as callgrind counts them."""
    with tempfile.TemporaryDirectory() as directory:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={Path(directory) / 'callgrind.out'}",
                sys.executable,
                "-m",
                "bench.gated_instructions",
                "--one",
                side,
                str(actions),
            ],
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=True,
        )
    collected = re.search(r"Collected : (\d+)", done.stderr)
    if collected is None:
        raise RuntimeError(f"callgrind said no total:\n{done.stderr[-2000:]}")
    return int(collected.group(1))


def main(runs: int) -> None:
    jobs = [(side, actions) for side in SIDES for actions in (0, runs)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two processes at a time: callgrind counts, not times
        counts = dict(zip(jobs, pool.map(lambda job: instructions(*job), jobs), strict=True))
    each = {side: (counts[(side, runs)] - counts[(side, 0)]) / runs for side in SIDES}
    for side in SIDES:
        print(f"{side:<10} {each[side] / 1e6:8.1f} M instructions a gated action (callgrind, user space)")
    print(f"ours / LangGraph: {each['ours'] / each['LangGraph']:.2f}× the instructions")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="gated actions counted after the warm-up")
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "ACTIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        asyncio.run(run(args.one[0], int(args.one[1])))
    else:
        main(args.runs)
