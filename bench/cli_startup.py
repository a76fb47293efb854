"""How long the `aios` command takes to start and finish: `--help` and the light, read-only commands.

    .venv/bin/python -m bench.cli_startup [--runs 10]

Each command runs once to warm the bytecode cache and the database, then ``--runs`` times; the medians of the
whole process's wall time and CPU time (user + system) are printed. On an idle machine the two agree; when other
work shares the cores, the wall time grows and the CPU time is the figure to compare (the load average printed
says how busy the machine was). Bytecode caching is on
whatever the environment says (PYTHONDONTWRITEBYTECODE is removed), as it is for an installed `aios`. The
database is a fresh SQLite file at the newest schema.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AIOS = str(Path(sys.executable).with_name("aios"))

COMMANDS = (
    ("--help",),
    ("why", "D-1"),
    ("sandbox", "show", "--json"),
    ("memory", "search", "refund"),
    ("cost",),
)


def environment(database_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIOS_", "SLACK_", "ANTHROPIC_", "WEAVIATE_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update({"AIOS_DATABASE_URL": database_url, "AIOS_MEMORY_EMBEDDINGS": "off"})
    return env


def timed(args: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([AIOS, *args], env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as workdir:
        env = environment(f"sqlite+aiosqlite:///{Path(workdir) / 'aios.db'}")
        subprocess.run([AIOS, "db", "upgrade"], env=env, capture_output=True, check=True)
        load = os.getloadavg()[0]
        print(f"median of {runs} runs, after one warm-up run, bytecode caching on; load average {load:.1f}")
        print(f"  {'command':<33} {'wall':>7} {'cpu':>7}")
        for args in COMMANDS:
            timed(args, env)
            walls, cpus = zip(*(timed(args, env) for _ in range(runs)), strict=True)
            print(
                f"  aios {' '.join(args):<28} {statistics.median(walls) * 1000:4.0f} ms "
                f"{statistics.median(cpus) * 1000:4.0f} ms"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    main(parser.parse_args().runs)
