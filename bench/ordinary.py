"""``python -m bench ordinary``: an application's ordinary writes, plain and versioned in turn.

Where ``python -m bench`` gives each system a process of its own and settles the server
before every workload, this scenario measures what an application sees: one process
holds a plain and a versioned model of the same table, the two run one after the
other on the server as it is (default settings, autovacuum on, no ``VACUUM`` or
``CHECKPOINT`` in between), and each repetition's versioned time is divided by the
plain time measured next to it. On a shared, noisy machine only such pairs compare.

Afterwards it times the history reads beside their floor: the same SQL statements,
with the same parameters, executed directly on a DBAPI connection.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import click
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Integer, Text, event, select
from sqlalchemy.orm import configure_mappers

from bench.server import driver_option, fresh_database, server


@dataclass(frozen=True)
class Sizes:
    objects: int
    batch: int
    rounds: int


class Side:
    """One side of the comparison: an extension and its ``item`` model."""

    def __init__(self, name: str, db: SQLAlchemy, bases: tuple[type, ...]) -> None:
        self.name = name
        self.db = db
        self.Item: Any = type(
            f"{name.title()}Item",
            (db.Model, *bases),
            {
                "__tablename__": "item",
                "id": db.Column(Integer, primary_key=True),
                "name": db.Column(Text, nullable=False),
                "note": db.Column(Text),
                "count": db.Column(Integer, nullable=False),
                "stamp": db.Column(DateTime(timezone=True)),
            },
        )

    def app(self, url: str) -> Flask:
        app = Flask(f"bench-ordinary-{self.name}")
        app.config["SQLALCHEMY_DATABASE_URI"] = url
        self.db.init_app(app)
        return app


def _sides() -> tuple[Side, Side]:
    from chrononaut import Versioned, VersionedSQLAlchemy

    plain = Side("plain", SQLAlchemy(), ())
    versioned = Side("versioned", VersionedSQLAlchemy(), (Versioned,))
    configure_mappers()
    return plain, versioned


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start_at in range(0, len(ids), size):
        yield ids[start_at : start_at + size]


def _insert(side: Side, ids: list[int], batch: int) -> None:
    session = side.db.session
    stamp = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for chunk in _chunks(ids, batch):
        session.add_all(
            side.Item(id=n, name=f"item {n}", note="note", count=n, stamp=stamp) for n in chunk
        )
        session.commit()


def _update(side: Side, ids: list[int], batch: int, rounds: int) -> None:
    session = side.db.session
    Item = side.Item
    for round_number in range(rounds):
        for chunk in _chunks(ids, batch):
            for item in session.scalars(select(Item).where(Item.id.in_(chunk))):
                # A text that grows every round, and a counter.
                item.note = f"{item.note} and round {round_number}"
                item.count += 1
            session.commit()


def _timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _run(side: Side, server_url: str, sizes: Sizes) -> dict[str, float]:
    """Insert, then update, in a fresh database: seconds, and the median statements per
    commit, of each."""
    with fresh_database(server_url) as url:
        app = side.app(url.render_as_string(hide_password=False))
        with app.app_context():
            side.db.create_all()
            statements = [0]
            per_commit: list[int] = []
            engine = side.db.engine
            event.listen(
                engine,
                "before_cursor_execute",
                lambda *args: statements.__setitem__(0, statements[0] + 1),
            )

            def committed(*args: Any) -> None:
                per_commit.append(statements[0])
                statements[0] = 0

            event.listen(engine, "commit", committed)
            ids = list(range(1, sizes.objects + 1))
            insert = _timed(lambda: _insert(side, ids, sizes.batch))
            inserted = statistics.median(per_commit)
            per_commit.clear()
            update = _timed(lambda: _update(side, ids, sizes.batch, sizes.rounds))
            updated = statistics.median(per_commit)
            side.db.session.remove()
            side.db.engine.dispose()
    return {
        "insert": insert,
        "update": update,
        "insert_statements": inserted,
        "update_statements": updated,
    }


def _captured(engine: Any, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The statements and parameters ``call`` sends through ``engine``."""
    sent: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return sent


def _reads(side: Side, server_url: str, calls: int) -> dict[str, dict[str, float]]:
    """Median ms of ``versions()`` of a 6-version object and of ``version_at``, each
    beside the same SQL run on a raw DBAPI connection, the two alternating."""
    with fresh_database(server_url) as url:
        app = side.app(url.render_as_string(hide_password=False))
        with app.app_context():
            side.db.create_all()
            session = side.db.session
            _insert(side, list(range(1, 201)), 100)
            _update(side, list(range(1, 201)), 100, 2)
            at = datetime.now(timezone.utc)
            _update(side, list(range(1, 201)), 100, 3)
            item: Any = session.get(side.Item, 7)
            reads: dict[str, Callable[[], Any]] = {
                "versions()": item.versions,
                "version_at": lambda: item.version_at(at),
            }
            raw = side.db.engine.raw_connection()
            results = {}
            try:
                for name, call in reads.items():
                    sent = _captured(side.db.engine, call)

                    def floor(sent: list[tuple[str, Any]] = sent) -> None:
                        cursor = raw.cursor()
                        for statement, parameters in sent:
                            cursor.execute(statement, parameters)
                            cursor.fetchall()
                        cursor.close()

                    ours, bare = [], []
                    for _ in range(calls):
                        ours.append(_timed(call) * 1000)
                        bare.append(_timed(floor) * 1000)
                    results[name] = {
                        "ms": statistics.median(ours),
                        "raw_driver_ms": statistics.median(bare),
                        "statements": len(sent),
                    }
            finally:
                raw.close()
                session.remove()
                side.db.engine.dispose()
    return results


@click.command()
@click.option("--database-url", help="An existing PostgreSQL server (default: an embedded one).")
@driver_option
@click.option("--repetitions", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--objects", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--reads", type=click.IntRange(min=1), default=300, show_default=True)
def main(
    database_url: str | None, driver: str, repetitions: int, objects: int, rounds: int, reads: int
) -> None:
    """Insert and update an ordinary table, plain and versioned in turn, in one process."""
    sizes = Sizes(objects=objects, batch=100, rounds=rounds)
    plain, versioned = _sides()
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "versioned": []}
    with server(database_url, driver) as server_url:
        for repetition in range(repetitions):
            # Which side goes first alternates, so that neither always meets a server
            # still busy with the other's writes.
            order = (plain, versioned) if repetition % 2 == 0 else (versioned, plain)
            for side in order:
                runs[side.name].append(_run(side, server_url, sizes))
            click.echo(f"repetition {repetition + 1}/{repetitions} done", err=True)
        read_times = _reads(versioned, server_url, reads)
    click.echo(
        f"{driver}: {objects:,} objects in commits of 100, {rounds} update rounds; "
        f"medians of {repetitions} pairs"
    )
    for workload in ("insert", "update"):
        ratios = [
            v[workload] / p[workload] for v, p in zip(runs["versioned"], runs["plain"], strict=True)
        ]
        click.echo(
            f"  {workload}: plain {statistics.median(r[workload] for r in runs['plain']):.3f} s, "
            f"versioned {statistics.median(r[workload] for r in runs['versioned']):.3f} s, "
            f"ratio {statistics.median(ratios):.2f}x "
            f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)}); statements per commit "
            f"{runs['plain'][0][workload + '_statements']:g} plain, "
            f"{runs['versioned'][0][workload + '_statements']:g} versioned"
        )
    for name, timing in read_times.items():
        click.echo(
            f"  {name}: {timing['ms']:.3f} ms, raw driver {timing['raw_driver_ms']:.3f} ms "
            f"for the same {timing['statements']:g} statement(s); median of {reads} calls"
        )
