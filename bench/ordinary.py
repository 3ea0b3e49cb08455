"""``python -m bench ordinary``: an application's ordinary writes, plain and versioned in turn.

Where ``python -m bench`` gives each system a process of its own and settles the server
before every workload, this scenario measures what an application sees: one process
holds a plain and a versioned model of the same table, the two run one after the
other on the server as it is (default settings, autovacuum on, no ``VACUUM`` or
``CHECKPOINT`` in between), and each repetition's versioned time is divided by the
plain time measured next to it. On a shared, noisy machine only such pairs compare.

With ``--triggers``, a third side records through the database instead: plain
Flask-SQLAlchemy writes a table with the safety net's triggers installed
(:doc:`/safety-net`), and sends who acts and why before each commit as a session of
Chrononaut would, so that the triggers write the same snapshots with the same context.

Afterwards it times the history reads beside their floor: the same SQL statements,
with the same parameters, executed directly on a DBAPI connection.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

import click
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Integer, Text, event, select
from sqlalchemy.orm import configure_mappers

from bench.floor import beside_floor
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

    def app(self, url: str, **config: Any) -> Flask:
        app = Flask(f"bench-ordinary-{self.name}")
        app.config["SQLALCHEMY_DATABASE_URI"] = url
        app.config.update(config)
        self.db.init_app(app)
        return app

    def create(self, url: str) -> Flask:
        """Return this side's app on the empty database ``url``, its tables made."""
        app = self.app(url)
        with app.app_context():
            self.db.create_all()
        return app

    def before_writes(self) -> None:
        """Called in each commit before its writes."""


class TriggerSide(Side):
    """Plain Flask-SQLAlchemy on a table whose history the safety net's triggers record,
    given the context before each commit."""

    def __init__(self, versioned: Side) -> None:
        super().__init__("triggers", SQLAlchemy(), ())
        self.versioned = versioned

    def create(self, url: str) -> Flask:
        # The tables and the triggers come from the versioned model of the same table.
        installer = self.versioned.app(url, CHRONONAUT_SAFETY_NET=True)
        with installer.app_context():
            self.versioned.db.create_all()
            self.versioned.db.install_safety_net(self.versioned.Item)
            self.versioned.db.engine.dispose()
        return self.app(url)

    def before_writes(self) -> None:
        from chrononaut.capture.triggers import send_change_context

        send_change_context(self.db.session.connection())


def _sides() -> tuple[Side, Side, TriggerSide]:
    from chrononaut import Versioned, VersionedSQLAlchemy

    plain = Side("plain", SQLAlchemy(), ())
    versioned = Side("versioned", VersionedSQLAlchemy(), (Versioned,))
    triggers = TriggerSide(versioned)
    configure_mappers()
    return plain, versioned, triggers


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start_at in range(0, len(ids), size):
        yield ids[start_at : start_at + size]


def _insert(side: Side, ids: list[int]) -> None:
    """Add the objects of ``ids`` and commit them."""
    session = side.db.session
    side.before_writes()
    stamp = datetime(2024, 1, 1, tzinfo=timezone.utc)
    session.add_all(
        side.Item(id=n, name=f"item {n}", note="note", count=n, stamp=stamp) for n in ids
    )
    session.commit()


def _update(side: Side, ids: list[int], round_number: int) -> None:
    """Load the objects of ``ids`` with one query, change two columns, commit."""
    session = side.db.session
    side.before_writes()
    Item = side.Item
    for item in session.scalars(select(Item).where(Item.id.in_(ids))):
        # A text that grows every round, and a counter.
        item.note = f"{item.note} and round {round_number}"
        item.count += 1
    session.commit()


def _timed(work: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    work(*args)
    return time.perf_counter() - started


class Counter:
    """The statements ``engine`` sends, per commit."""

    def __init__(self, engine: Any) -> None:
        self.current = 0
        self.per_commit: list[int] = []
        event.listen(engine, "before_cursor_execute", self._sent)
        event.listen(engine, "commit", self._committed)

    def _sent(self, *args: Any) -> None:
        self.current += 1

    def _committed(self, *args: Any) -> None:
        self.per_commit.append(self.current)
        self.current = 0

    def median(self) -> float:
        median = statistics.median(self.per_commit)
        self.per_commit.clear()
        return median


def _pair(sides: tuple[Side, ...], server_url: str, sizes: Sizes) -> dict[str, dict[str, float]]:
    """Insert, then update, each side in a fresh database of its own, one commit of
    each side after the other; return each side's seconds and median statements per
    commit."""
    ids = list(range(1, sizes.objects + 1))
    steps: list[Callable[[Side, list[int]], None]] = [_insert]
    steps += [partial(_update, round_number=r) for r in range(sizes.rounds)]
    with ExitStack() as stack:
        apps = {}
        counters = {}
        for side in sides:
            url = stack.enter_context(fresh_database(server_url))
            apps[side.name] = side.create(url.render_as_string(hide_password=False))
            with apps[side.name].app_context():
                counters[side.name] = Counter(side.db.engine)
        seconds = {side.name: {"insert": 0.0, "update": 0.0} for side in sides}
        statements: dict[str, dict[str, float]] = {side.name: {} for side in sides}
        for number, step in enumerate(steps):
            workload = "insert" if number == 0 else "update"
            for chunk_number, chunk in enumerate(_chunks(ids, sizes.batch)):
                # Which side goes first alternates, so that neither always meets a
                # server still busy with the other's commit.
                order = sides if chunk_number % 2 == 0 else sides[::-1]
                for side in order:
                    with apps[side.name].app_context():
                        seconds[side.name][workload] += _timed(step, side, chunk)
            if number in (0, len(steps) - 1):
                for side in sides:
                    statements[side.name][workload] = counters[side.name].median()
        for side in sides:
            with apps[side.name].app_context():
                side.db.engine.dispose()
    return {
        side.name: {
            **seconds[side.name],
            **{f"{w}_statements": n for w, n in statements[side.name].items()},
        }
        for side in sides
    }


def _reads(side: Side, server_url: str, calls: int) -> dict[str, dict[str, float]]:
    """Median ms of ``versions()`` of a 6-version object and of ``version_at``, each
    beside the same SQL run on a raw DBAPI connection, the two alternating."""
    with fresh_database(server_url) as url:
        app = side.create(url.render_as_string(hide_password=False))
        with app.app_context():
            session = side.db.session
            ids = list(range(1, 101))
            _insert(side, ids)
            for round_number in range(5):
                _update(side, ids, round_number)
                if round_number == 2:
                    at = datetime.now(timezone.utc)
            item: Any = session.get(side.Item, 7)
            reads: dict[str, Callable[[], Any]] = {
                "versions()": item.versions,
                "version_at": lambda: item.version_at(at),
            }
            try:
                results = {
                    name: beside_floor(side.db.engine, call, calls) for name, call in reads.items()
                }
            finally:
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
@click.option(
    "--triggers",
    is_flag=True,
    help="Also time a third side whose history the safety net's triggers record.",
)
def main(
    database_url: str | None,
    driver: str,
    repetitions: int,
    objects: int,
    rounds: int,
    reads: int,
    triggers: bool,
) -> None:
    """Insert and update an ordinary table, plain and versioned commit by commit, in one
    process."""
    sizes = Sizes(objects=objects, batch=100, rounds=rounds)
    plain, versioned, trigger_side = _sides()
    sides: tuple[Side, ...] = (plain, versioned, trigger_side) if triggers else (plain, versioned)
    runs: dict[str, list[dict[str, float]]] = {side.name: [] for side in sides}
    with server(database_url, driver) as server_url:
        for repetition in range(repetitions):
            pair = _pair(sides, server_url, sizes)
            for name, run in pair.items():
                runs[name].append(run)
            click.echo(f"repetition {repetition + 1}/{repetitions} done", err=True)
        read_times = _reads(versioned, server_url, reads)
    click.echo(
        f"{driver}: {objects:,} objects in commits of 100, {rounds} update rounds; "
        f"medians of {repetitions} pairs"
    )
    for workload in ("insert", "update"):
        plain_median = statistics.median(r[workload] for r in runs["plain"])
        for side in sides[1:]:
            ratios = [
                s[workload] / p[workload]
                for s, p in zip(runs[side.name], runs["plain"], strict=True)
            ]
            click.echo(
                f"  {workload}: plain {plain_median:.3f} s, {side.name} "
                f"{statistics.median(r[workload] for r in runs[side.name]):.3f} s, "
                f"ratio {statistics.median(ratios):.2f}x "
                f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)}); statements per commit "
                f"{runs['plain'][0][workload + '_statements']:g} plain, "
                f"{runs[side.name][0][workload + '_statements']:g} {side.name}"
            )
    for name, timing in read_times.items():
        click.echo(
            f"  {name}: {timing['ms']:.3f} ms, raw driver {timing['raw_driver_ms']:.3f} ms "
            f"for the same {timing['statements']:g} statement(s); median of {reads} calls"
        )
