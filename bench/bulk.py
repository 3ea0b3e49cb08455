"""W7: one ``UPDATE`` statement that changes many rows, plain Flask-SQLAlchemy against
Chrononaut, which records a snapshot of every row the statement writes.

``python -m bench`` runs it after the other workloads; ``python -m bench.bulk`` runs it
alone, also with psycopg 3 (``--driver psycopg``).
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from multiprocessing import get_context
from typing import Any

import click
from sqlalchemy import insert, update
from sqlalchemy.engine import make_url

from bench.server import fresh_database
from bench.systems import SYSTEMS, System
from bench.worker import _app_for, hold_autovacuum, settle
from chrononaut.embedded import embedded_server

#: The systems compared, each in a process of its own as in the other workloads.
NAMES = ("plain", "chrononaut")
#: Rows the statement changes at full size.
ROWS = 10_000
_system: System | None = None


def start(name: str) -> None:
    """Process initializer: define the system's model once for the worker's lifetime."""
    global _system
    _system = SYSTEMS[name]()


def run(server_url: str, driver: str, rows: int, repetitions: int) -> list[float]:
    """Seconds of each repetition of one statement (and its commit) that adds 1 to the
    score and changes the title of ``rows`` rows, in a fresh database."""
    system = _system
    assert system is not None, "start() has not run in this process"
    with fresh_database(server_url) as url:
        app = _app_for(url.set(drivername=driver), system)
        with app.app_context():
            system.create_schema()
            engine = system.db.engine
            hold_autovacuum(engine)
            Article = system.Article
            with engine.begin() as connection:
                connection.execute(
                    insert(Article.__table__),
                    [{"title": f"article {n}", "body": "x" * 100, "score": n} for n in range(rows)],
                )
            session = system.db.session
            seconds = []
            for repetition in range(repetitions):
                settle(engine)
                started = time.perf_counter()
                session.execute(
                    update(Article).values(score=Article.score + 1, title=f"edit {repetition}")
                )
                session.commit()
                seconds.append(time.perf_counter() - started)
            session.remove()
            engine.dispose()
    return seconds


def measure(server_url: str, driver: str, rows: int, repetitions: int) -> dict[str, Any]:
    """Run W7 for both systems; ratios are taken per repetition, as in W1 to W3."""
    spawn = get_context("spawn")
    with ExitStack() as stack:
        seconds = {}
        for name in NAMES:
            pool = stack.enter_context(
                ProcessPoolExecutor(1, mp_context=spawn, initializer=start, initargs=(name,))
            )
            seconds[name] = pool.submit(run, server_url, driver, rows, repetitions).result()
    ratios = [
        versioned / plain
        for versioned, plain in zip(seconds["chrononaut"], seconds["plain"], strict=True)
    ]
    summary = {
        "rows": rows,
        "driver": driver,
        "seconds": {name: statistics.median(times) for name, times in seconds.items()},
        "seconds_per_repetition": seconds,
        "ratio": statistics.median(ratios),
        "ratio_per_repetition": ratios,
    }
    click.echo(
        f"W7 one UPDATE of {rows:,} rows ({driver}): plain {summary['seconds']['plain']:.3f} s, "
        f"Chrononaut {summary['seconds']['chrononaut']:.3f} s, "
        f"ratio {summary['ratio']:.2f} (median of {repetitions})",
        err=True,
    )
    return summary


@click.command()
@click.option(
    "--database-url",
    help="An existing PostgreSQL server to measure on (default: start an embedded one).",
)
@click.option(
    "--driver",
    type=click.Choice(["postgresql+psycopg2", "postgresql+psycopg"]),
    default="postgresql+psycopg2",
    show_default=True,
)
@click.option("--rows", type=click.IntRange(min=1), default=ROWS, show_default=True)
@click.option("--repetitions", type=click.IntRange(min=1), default=5, show_default=True)
def main(database_url: str | None, driver: str, rows: int, repetitions: int) -> None:
    """Time W7 alone."""
    if database_url:
        measure(
            make_url(database_url).render_as_string(hide_password=False), driver, rows, repetitions
        )
        return
    # Without fsync, as ``python -m bench`` runs it.
    with embedded_server("postgresql+psycopg2", durable=False) as url:
        measure(url.render_as_string(hide_password=False), driver, rows, repetitions)


if __name__ == "__main__":
    main()
