"""``python -m bench``: measure plain Flask-SQLAlchemy, Chrononaut and the peers in one run."""

from __future__ import annotations

import json
import multiprocessing
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
import sqlalchemy
from sqlalchemy.engine import make_url

from bench import asof, bulk, worker
from bench.report import print_results
from bench.server import admin_connection, driver_option, server
from bench.systems import SYSTEMS

FULL = worker.Sizes(
    objects=10_000, updates=5, batch=100, reads=200, history_rows=1_000_000, deep_versions=1000
)
QUICK = worker.Sizes(
    objects=100, updates=1, batch=100, reads=10, history_rows=5_000, deep_versions=20
)


def _revision() -> str | None:
    """The git revision measured, with ``-dirty`` when the tree has changes."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return described.stdout.strip()


def _server_version(server_url: str) -> str:
    with admin_connection(make_url(server_url)) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0])


@click.command()
@click.option(
    "--database-url",
    help="An existing PostgreSQL server to make the benchmark databases on "
    "(default: start an embedded one).",
)
@driver_option
@click.option("--quick", is_flag=True, help="Small sizes: checks the harness in under a minute.")
@click.option("--repetitions", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--objects", type=click.IntRange(min=1), help="Objects written per repetition.")
@click.option("--history-rows", type=click.IntRange(min=0), help="History size for W6.")
@click.option(
    "--system",
    "systems",
    type=click.Choice(list(SYSTEMS)),
    multiple=True,
    help="Measure only these systems (repeatable); plain Flask-SQLAlchemy is always run.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench-results.json"),
    show_default=True,
    help="Where to write the results.",
)
def main(
    database_url: str | None,
    driver: str,
    quick: bool,
    repetitions: int,
    objects: int | None,
    history_rows: int | None,
    systems: tuple[str, ...],
    json_path: Path,
) -> None:
    """Time writes (W1-W3) and history reads (W4-W6) of each system on fresh databases."""
    given = {"objects": objects, "history_rows": history_rows}
    sizes = replace(
        QUICK if quick else FULL,
        **{name: value for name, value in given.items() if value is not None},
    )
    names = [
        "plain",
        *(name for name in SYSTEMS if name != "plain" and (not systems or name in systems)),
    ]
    started = time.perf_counter()
    with server(database_url, driver) as server_url, ExitStack() as stack:
        # One long-lived process per system, so that each imports only its own library;
        # the systems take turns, never run at the same time.
        spawn = multiprocessing.get_context("spawn")
        pools = {
            name: stack.enter_context(
                ProcessPoolExecutor(1, mp_context=spawn, initializer=worker.start, initargs=(name,))
            )
            for name in names
        }
        writes: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for repetition in range(repetitions):
            for name in names:
                click.echo(f"repetition {repetition + 1}/{repetitions}: {name} writes", err=True)
                run = pools[name].submit(worker.run_writes, server_url, sizes, repetition)
                writes[name].append(run.result())
        history = {}
        for name in names:
            if SYSTEMS[name].keeps_history:
                click.echo(f"{name}: reads at {sizes.history_rows:,} history rows", err=True)
                run = pools[name].submit(
                    worker.run_history_reads, server_url, sizes, repetitions, 0
                )
                history[name] = run.result()
        bulk_rows = 100 if quick else bulk.ROWS
        bulk_update = bulk.measure(server_url, "postgresql+psycopg2", bulk_rows, repetitions)
        server_version = _server_version(server_url)
    results = {
        "machine": {
            "python": platform.python_version(),
            "sqlalchemy": sqlalchemy.__version__,
            "postgresql": server_version,
            "driver": driver,
            "server": "given by --database-url" if database_url else "embedded",
            "platform": platform.platform(),
            "revision": _revision(),
            "cpus": multiprocessing.cpu_count(),
        },
        "sizes": asdict(sizes),
        "repetitions": repetitions,
        "seconds": time.perf_counter() - started,
        "systems": {
            name: _summary(writes[name], writes["plain"], history.get(name)) for name in names
        },
        "bulk_update": bulk_update,
    }
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print_results(results, {name: SYSTEMS[name].label for name in names})
    click.echo(f"results written to {json_path}", err=True)


def _summary(
    runs: list[dict[str, Any]], plain_runs: list[dict[str, Any]], history: dict[str, Any] | None
) -> dict[str, Any]:
    """Medians over the repetitions; ratios are taken per repetition against plain's run."""
    summary: dict[str, Any] = {}
    for workload in ("insert", "update", "delete"):
        seconds = [run[workload]["seconds"] for run in runs]
        ratios = [
            run[workload]["seconds"] / plain[workload]["seconds"]
            for run, plain in zip(runs, plain_runs, strict=True)
        ]
        summary[workload] = {
            "seconds": statistics.median(seconds),
            "ratio": statistics.median(ratios),
            "seconds_per_repetition": seconds,
            "ratio_per_repetition": ratios,
            "statements_per_commit": statistics.median(
                run[workload]["statements_per_commit"] for run in runs
            ),
            "statements_per_commit_of_10": runs[0]["small_commit_statements"][workload],
        }
    if "fresh_reads" in runs[0]:
        summary["fresh_reads"] = {
            key: statistics.median(run["fresh_reads"][key] for run in runs)
            for key in ("versions_ms", "version_at_ms")
        }
    if history is not None:
        summary["grown_reads"] = history
    return summary


if __name__ == "__main__":
    # ``python -m bench asof`` times the dated reads of a whole model instead,
    # ``python -m bench ordinary`` an application's writes, plain and versioned in turn,
    # and ``python -m bench large`` the partitioned layout against the plain one.
    if sys.argv[1:2] == ["asof"]:
        asof.main(sys.argv[2:], prog_name="python -m bench asof")
    elif sys.argv[1:2] == ["large"]:
        from bench import large

        large.main(sys.argv[2:], prog_name="python -m bench large")
    elif sys.argv[1:2] == ["ordinary"]:
        from bench import ordinary

        ordinary.main(sys.argv[2:], prog_name="python -m bench ordinary")
    else:
        main()
