"""W7: one ``UPDATE``, ``DELETE`` or ``INSERT`` statement that writes many rows, plain
Flask-SQLAlchemy against Chrononaut, which records a snapshot of every row the
statement writes.

``python -m bench`` runs the UPDATE after the other workloads; ``python -m bench.bulk``
runs any of the three alone (``--operation``), also with psycopg 3 (``--driver
psycopg``).
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from multiprocessing import get_context
from typing import Any

import click
from sqlalchemy import delete, insert, text, update
from sqlalchemy.engine import make_url

from bench.server import fresh_database
from bench.systems import SYSTEMS, System
from bench.worker import _app_for, hold_autovacuum, settle
from chrononaut.embedded import embedded_server

#: The systems compared, each in a process of its own as in the other workloads.
NAMES = ("plain", "chrononaut")
#: Rows the statement changes at full size.
ROWS = 10_000
OPERATIONS = ("update", "delete", "insert")
_system: System | None = None


def start(name: str) -> None:
    """Process initializer: define the system's model once for the worker's lifetime."""
    global _system
    _system = SYSTEMS[name]()


def run(server_url: str, driver: str, rows: int, repetitions: int, operation: str) -> list[float]:
    """Seconds of each repetition of one statement (and its commit) that writes ``rows``
    rows, in a fresh database: an UPDATE that adds 1 to the score and changes the title
    of every row, a DELETE of every row, or an INSERT of a list of rows."""
    system = _system
    assert system is not None, "start() has not run in this process"
    with fresh_database(server_url) as url:
        app = _app_for(url.set(drivername=driver), system)
        with app.app_context():
            system.create_schema()
            engine = system.db.engine
            hold_autovacuum(engine)
            Article = system.Article
            new_rows = [
                {"title": f"article {n}", "body": "x" * 100, "score": n} for n in range(rows)
            ]
            session = system.db.session
            seconds = []
            for repetition in range(repetitions):
                # The rows to change are written outside the session: not timed, no history.
                with engine.begin() as connection:
                    connection.execute(text(f"TRUNCATE {Article.__table__.name}"))
                    if operation != "insert":
                        connection.execute(insert(Article.__table__), new_rows)
                settle(engine)
                started = time.perf_counter()
                if operation == "update":
                    session.execute(
                        update(Article).values(score=Article.score + 1, title=f"edit {repetition}")
                    )
                elif operation == "delete":
                    session.execute(delete(Article))
                else:
                    session.execute(insert(Article), new_rows)
                session.commit()
                seconds.append(time.perf_counter() - started)
            session.remove()
            engine.dispose()
    return seconds


def measure(
    server_url: str, driver: str, rows: int, repetitions: int, operation: str = "update"
) -> dict[str, Any]:
    """Run W7 for both systems; ratios are taken per repetition, as in W1 to W3."""
    spawn = get_context("spawn")
    with ExitStack() as stack:
        seconds = {}
        for name in NAMES:
            pool = stack.enter_context(
                ProcessPoolExecutor(1, mp_context=spawn, initializer=start, initargs=(name,))
            )
            seconds[name] = pool.submit(
                run, server_url, driver, rows, repetitions, operation
            ).result()
    ratios = [
        versioned / plain
        for versioned, plain in zip(seconds["chrononaut"], seconds["plain"], strict=True)
    ]
    summary = {
        "rows": rows,
        "operation": operation,
        "driver": driver,
        "seconds": {name: statistics.median(times) for name, times in seconds.items()},
        "seconds_per_repetition": seconds,
        "ratio": statistics.median(ratios),
        "ratio_per_repetition": ratios,
    }
    click.echo(
        f"W7 one {operation.upper()} of {rows:,} rows ({driver}): "
        f"plain {summary['seconds']['plain']:.3f} s, "
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
@click.option("--operation", type=click.Choice(OPERATIONS), default="update", show_default=True)
@click.option("--rows", type=click.IntRange(min=1), default=ROWS, show_default=True)
@click.option("--repetitions", type=click.IntRange(min=1), default=5, show_default=True)
def main(
    database_url: str | None, driver: str, operation: str, rows: int, repetitions: int
) -> None:
    """Time W7 alone."""
    if database_url:
        server_url = make_url(database_url).render_as_string(hide_password=False)
        measure(server_url, driver, rows, repetitions, operation)
        return
    # Without fsync, as ``python -m bench`` runs it.
    with embedded_server("postgresql+psycopg2", durable=False) as url:
        measure(url.render_as_string(hide_password=False), driver, rows, repetitions, operation)


if __name__ == "__main__":
    main()
