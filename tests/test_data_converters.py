"""Converting 0.1 ``<table>_history`` tables into ``chrononaut_activity``.

The legacy schema and data are in ``tests/legacy/``; each test below states the
snapshots that data must turn into (the mapping of ``docs/migration.rst``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, Table, func, select

from chrononaut import ChrononautException, Versioned
from chrononaut.data_converters import HistoryModelDataConverter
from chrononaut.history.serialization import UTC
from tests.activity import activity_rows, rows_of
from tests.legacy import load_legacy, run_sql


def at(text_value: str) -> datetime:
    return datetime.fromisoformat(text_value).replace(tzinfo=UTC)


@pytest.fixture
def legacy(db, models):
    """The test models plus Ticket, with 0.1 history tables and the data of data.sql."""
    return load_legacy(db, models)


def snapshots(db: Any, table_name: str, **key: Any) -> list[tuple[Any, ...]]:
    """(version, changed, data, user_info, extra_info) of each converted row, in order."""
    return [
        (row.version, row.changed, row.data, row.user_info, row.extra_info)
        for row in rows_of(db, table_name, **key)
    ]


def todo_data(version, title, done=False, priority=None, text="all of them", due_at=None):
    return {
        "id": 1,
        "title": title,
        "text": text,
        "done": done,
        "priority": priority,
        "due_at": due_at,
        "version": version,
    }


def test_todo_history_becomes_one_snapshot_per_state(db, legacy):
    converter = HistoryModelDataConverter(legacy.Todo)
    assert converter.convert(db.session) == 4
    assert converter.convert(db.session) == 0
    # Objects 1 and 2 have the 5 rows of todo_history; 3 and 4 only live rows.
    assert (
        converter.objects_seen,
        converter.objects_converted,
        converter.objects_already_complete,
        converter.snapshots_written,
        converter.legacy_rows_read,
    ) == (4, 4, 0, 9, 5)

    due = "2021-03-01T09:00:00+00:00"
    ada = {"user_id": "ada@example.org", "remote_addr": "10.0.0.1"}
    bob = {"user_id": "bob@example.org", "remote_addr": None}
    assert snapshots(db, "todo", id=1) == [
        # 0.1 did not record when an object was created; without created_at the first
        # state is dated by the first change.
        (
            0,
            at("2021-01-02 10:00"),
            todo_data(0, "Write doc", priority="Priority.LOW", due_at=due),
            {},
            {},
        ),
        (
            1,
            at("2021-01-02 10:00"),
            todo_data(1, "Write docs", priority="Priority.LOW", due_at=due),
            ada,
            {"rationale": "typo"},
        ),
        (
            2,
            at("2021-01-03 11:30"),
            todo_data(2, "Write docs", priority="Priority.HIGH", due_at=due),
            bob,
            {"hidden_cols_changed": ["secret"]},
        ),
        (
            3,
            at("2021-01-04 12:45:30.25"),
            todo_data(3, "Write docs", done=True, priority="Priority.HIGH", due_at=due),
            {"user_id": None, "remote_addr": "10.0.0.2"},
            {},
        ),
    ]


def test_deleted_and_unchanged_todos(db, legacy):
    started = datetime.now(UTC)
    HistoryModelDataConverter(legacy.Todo).convert_all(db.session)
    finished = datetime.now(UTC)

    bob = {"user_id": "bob@example.org", "remote_addr": None}
    milk = {"id": 2, "text": None, "done": False, "priority": None, "due_at": None}
    assert snapshots(db, "todo", id=2) == [
        (0, at("2021-02-01 08:00"), {**milk, "title": "Buy milk", "version": 0}, {}, {}),
        (
            1,
            at("2021-02-01 08:00"),
            {**milk, "title": "Buy oat milk", "version": 1},
            {"user_id": "ada@example.org", "remote_addr": None},
            {},
        ),
        # The delete: the last state once more, one version up, dated by the delete.
        (
            2,
            at("2021-02-05 18:00"),
            {**milk, "title": "Buy oat milk", "version": 2},
            bob,
            {"rationale": "done"},
        ),
    ]
    # Never changed: the live row is the only state. 0.1 recorded no time for it, so
    # it is dated by the conversion; a NULL version counts as 0.
    for todo_id, title in ((3, "Old task"), (4, "New task")):
        [(version, changed, data, user_info, extra_info)] = snapshots(db, "todo", id=todo_id)
        assert (version, data["title"], user_info, extra_info) == (0, title, {}, {})
        assert started <= changed <= finished


def test_versions_missing_before_the_live_row_are_logged(db, legacy, caplog):
    # As when the new release changed the object twice before its history was converted.
    with db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE todo SET version = 5 WHERE id = 1")
    with caplog.at_level(logging.WARNING, logger="chrononaut.data_converters"):
        HistoryModelDataConverter(legacy.Todo).convert_all(db.session)
    # On the logger docs/migration.rst names.
    assert [(record.name, record.levelname, record.getMessage()) for record in caplog.records] == [
        (
            "chrononaut.data_converters",
            "WARNING",
            "Todo {'id': 1}: its 0.1 history ends at version 2, but the live row has version "
            "5; the states in between were never recorded and stay missing.",
        )
    ]
    assert [row.version for row in rows_of(db, "todo", id=1)] == [0, 1, 2, 5]


def test_hidden_and_untracked_values_are_not_copied(db, legacy):
    HistoryModelDataConverter(legacy.Todo).convert_all(db.session)
    for row in rows_of(db, "todo"):
        assert "secret" not in row.data
        assert "starred" not in row.data
        assert not {"s1", "s2", "s3"} & set(map(str, row.data.values()))


def test_text_keys_created_at_and_null_versions(db, legacy):
    converter = HistoryModelDataConverter(legacy.Ticket, id_column="uuid")
    assert converter.convert_all(db.session) == 3

    def ticket(uuid, title, created_at, version):
        return {"uuid": uuid, "title": title, "created_at": created_at, "version": version}

    a_created, b_created = "2022-05-01T07:00:00+00:00", "2022-04-01T06:00:00+00:00"
    ada = {"user_id": "ada@example.org", "remote_addr": None}
    bob = {"user_id": "bob@example.org", "remote_addr": None}
    # With created_at, the first state is dated by it.
    assert snapshots(db, "ticket", uuid="a-7f3c") == [
        (0, at("2022-05-01 07:00"), ticket("a-7f3c", "Printer smoking", a_created, 0), {}, {}),
        (1, at("2022-05-01 07:30"), ticket("a-7f3c", "Printer on fire", a_created, 1), ada, {}),
    ]
    # The NULL version of the first state counts as 0, and a NULL change_info as empty.
    assert snapshots(db, "ticket", uuid="b-19d0") == [
        (0, at("2022-04-01 06:00"), ticket("b-19d0", "Coffee", b_created, 0), {}, {}),
        (1, at("2022-04-02 06:00"), ticket("b-19d0", "Coffee machine!", b_created, 1), {}, {}),
        (2, at("2022-04-03 06:00"), ticket("b-19d0", "Coffee machine", b_created, 2), bob, {}),
    ]
    assert snapshots(db, "ticket", uuid="c-0e21") == [
        (
            0,
            at("2022-06-01 05:00"),
            ticket("c-0e21", "Never touched", "2022-06-01T05:00:00+00:00", 0),
            {},
            {},
        )
    ]


def test_composite_keys(db, legacy):
    converter = HistoryModelDataConverter(legacy.Translation, id_column=("locale", "slug"))
    assert converter.convert_all(db.session) == 3
    ada = {"user_id": "ada@example.org"}
    assert snapshots(db, "translation", locale="de", slug="hello") == [
        (
            0,
            at("2023-01-01"),
            {"locale": "de", "slug": "hello", "text": "Tag", "version": 0},
            {},
            {},
        ),
        (
            1,
            at("2023-01-01"),
            {"locale": "de", "slug": "hello", "text": "Hallo", "version": 1},
            ada,
            {},
        ),
    ]
    assert [row.version for row in rows_of(db, "translation", locale="de", slug="bye")] == [0, 1]
    assert [row.version for row in rows_of(db, "translation", locale="en", slug="hello")] == [0]


def test_composite_keys_in_any_order(db, legacy):
    converter = HistoryModelDataConverter(legacy.Translation, id_column=["slug", "locale"])
    assert converter.convert(db.session, limit=1) == 1
    assert converter.convert(db.session, limit=5) == 2
    assert [(row.key, row.data["text"]) for row in rows_of(db, "translation")] == [
        ({"locale": "de", "slug": "bye"}, "Tschuess"),
        ({"locale": "de", "slug": "bye"}, "Tschuess"),
        ({"locale": "de", "slug": "hello"}, "Tag"),
        ({"locale": "de", "slug": "hello"}, "Hallo"),
        ({"locale": "en", "slug": "hello"}, "Hello"),
    ]


def test_joined_inheritance_converts_through_the_mapper_chain(db, legacy):
    assert HistoryModelDataConverter(legacy.Dog).convert_all(db.session) == 1
    dog = {"id": 1, "kind": "dog"}
    assert [(version, changed, data) for version, changed, data, _, _ in snapshots(db, "dog")] == [
        (0, at("2020-06-01 12:00"), {**dog, "name": "Rex", "breed": "Mutt", "version": 0}),
        (1, at("2020-06-01 12:00"), {**dog, "name": "Rex II", "breed": "Mutt", "version": 1}),
        (2, at("2020-06-02 12:00"), {**dog, "name": "Rex II", "breed": "Collie", "version": 2}),
    ]
    # The root model converts its own objects and those of single-table subclasses;
    # the dog's history belongs to the Dog converter.
    assert HistoryModelDataConverter(legacy.Animal).convert_all(db.session) == 2
    assert [(row.key, row.version, row.data) for row in rows_of(db, "animal")] == [
        ({"id": 2}, 0, {"id": 2, "kind": "cat", "name": "Tom", "indoor": False, "version": 0}),
        ({"id": 2}, 1, {"id": 2, "kind": "cat", "name": "Tom", "indoor": True, "version": 1}),
        ({"id": 3}, 0, {"id": 3, "kind": "animal", "name": "Blob", "version": 0}),
    ]


# -- polymorphic tables as real 0.1 databases hold them --------------------------------

#: Discriminator values no mapped class claims any more, and a NULL one.
UNCLAIMED_KINDS = """
-- Animal 4 was created as a plain animal, re-classed as a "hamster" (a class removed
-- since) and renamed; the release that removed the class set its kind back to
-- "animal" with plain SQL, so no 0.1 row records that.
INSERT INTO animal (id, kind, name, indoor, version) VALUES (4, 'animal', 'Hammy II', null, 2);
INSERT INTO animal_history (id, kind, name, indoor, version, changed, change_info) VALUES
    (4, 'animal', 'Blobby', null, 0, '2020-08-01 12:00+00', '{"user_id": "ada@example.org"}'),
    (4, 'hamster', 'Hammy', null, 1, '2020-08-02 12:00+00', '{"user_id": "bob@example.org"}');
-- Animal 5, a hamster, was deleted.
INSERT INTO animal_history (id, kind, name, indoor, version, changed, change_info) VALUES
    (5, 'hamster', 'Nibbles', null, 0, '2020-08-03 12:00+00', '{"user_id": "ada@example.org"}');
-- Animal 6 dates from before the discriminator was filled in.
INSERT INTO animal (id, kind, name, indoor, version) VALUES (6, 'animal', 'Fossil', null, 1);
INSERT INTO animal_history (id, kind, name, indoor, version, changed, change_info) VALUES
    (6, null, 'Fossil?', null, 0, '2020-08-04 12:00+00', null);
-- Dog 7 was a "hound" until that identity was renamed "dog"; its 0.1 rows have their
-- dog_history partners, so they are the Dog converter's.
INSERT INTO animal (id, kind, name, indoor, version) VALUES (7, 'dog', 'Fido', null, 1);
INSERT INTO dog (id, breed) VALUES (7, 'Beagle');
INSERT INTO animal_history (id, kind, name, indoor, version, changed, change_info) VALUES
    (7, 'hound', 'Fido', null, 0, '2020-09-01 12:00+00', '{"user_id": "bob@example.org"}');
INSERT INTO dog_history (id, breed, version) VALUES (7, 'Basset', 0);
-- Dog 8's first state was recorded before Dog had a table of its own: no dog_history
-- partner, but its kind names Dog.
INSERT INTO animal (id, kind, name, indoor, version) VALUES (8, 'dog', 'Laika', null, 1);
INSERT INTO dog (id, breed) VALUES (8, 'Husky');
INSERT INTO animal_history (id, kind, name, indoor, version, changed, change_info) VALUES
    (8, 'dog', 'Laika', null, 0, '2020-10-01 12:00+00', '{"user_id": "ada@example.org"}');
"""


def test_rows_whose_kind_no_class_claims_convert_under_the_model(db, legacy, caplog):
    with db.engine.begin() as connection:
        connection.exec_driver_sql(UNCLAIMED_KINDS)
    with caplog.at_level(logging.WARNING, logger="chrononaut"):
        assert HistoryModelDataConverter(legacy.Animal).convert_all(db.session) == 5
        assert HistoryModelDataConverter(legacy.Dog).convert_all(db.session) == 3
    # Every state is there, so nothing is reported missing.
    assert caplog.messages == []

    ada = {"user_id": "ada@example.org"}
    bob = {"user_id": "bob@example.org"}

    def animal(id_, kind, name, version):
        return {"id": id_, "kind": kind, "name": name, "version": version}

    # Unclaimed kinds are snapshotted with the converted model's columns.
    assert snapshots(db, "animal", id=4) == [
        (0, at("2020-08-01 12:00"), animal(4, "animal", "Blobby", 0), {}, {}),
        (1, at("2020-08-01 12:00"), animal(4, "hamster", "Hammy", 1), ada, {}),
        (2, at("2020-08-02 12:00"), animal(4, "animal", "Hammy II", 2), bob, {}),
    ]
    assert snapshots(db, "animal", id=5) == [
        (0, at("2020-08-03 12:00"), animal(5, "hamster", "Nibbles", 0), {}, {}),
        (1, at("2020-08-03 12:00"), animal(5, "hamster", "Nibbles", 1), ada, {}),
    ]
    assert snapshots(db, "animal", id=6) == [
        (0, at("2020-08-04 12:00"), animal(6, None, "Fossil?", 0), {}, {}),
        (1, at("2020-08-04 12:00"), animal(6, "animal", "Fossil", 1), {}, {}),
    ]
    assert snapshots(db, "animal", id=7) == []
    assert snapshots(db, "dog", id=7) == [
        (0, at("2020-09-01 12:00"), {**animal(7, "hound", "Fido", 0), "breed": "Basset"}, {}, {}),
        (1, at("2020-09-01 12:00"), {**animal(7, "dog", "Fido", 1), "breed": "Beagle"}, bob, {}),
    ]
    assert snapshots(db, "animal", id=8) == []
    assert snapshots(db, "dog", id=8) == [
        (0, at("2020-10-01 12:00"), {**animal(8, "dog", "Laika", 0), "breed": None}, {}, {}),
        (1, at("2020-10-01 12:00"), {**animal(8, "dog", "Laika", 1), "breed": "Husky"}, ada, {}),
    ]
    # Every 0.1 row went into exactly one converter's snapshots.
    assert [row.version for row in rows_of(db, "animal", id=2)] == [0, 1]
    assert [row.version for row in rows_of(db, "dog", id=1)] == [0, 1, 2]


def test_a_single_table_subclass_converts_only_its_own_kind(db, legacy):
    with db.engine.begin() as connection:
        connection.exec_driver_sql(UNCLAIMED_KINDS)
    assert HistoryModelDataConverter(legacy.Cat).convert_all(db.session) == 1
    assert {row.key["id"] for row in rows_of(db, "animal")} == {2}


def test_created_at_is_read_from_the_live_row_when_the_history_lacks_it(db, legacy):
    # 0.1 tables often hold NULL where the live row has the value.
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE ticket_history SET created_at = NULL;"
            # Set later than its first change (a backfill): the first change wins.
            "UPDATE ticket SET created_at = '2022-04-05 00:00+00' WHERE uuid = 'b-19d0';"
            # Deleted: only a later 0.1 row holds the value.
            "INSERT INTO ticket_history (uuid, title, created_at, version, changed) VALUES"
            " ('d-dead', 'Gone', null, 0, '2022-07-02 00:00+00'),"
            " ('d-dead', 'Gone!', '2022-07-01 00:00+00', 1, '2022-07-03 00:00+00');"
        )
    HistoryModelDataConverter(legacy.Ticket, id_column="uuid").convert_all(db.session)

    def dates(uuid):
        return [(row.version, row.changed) for row in rows_of(db, "ticket", uuid=uuid)]

    assert dates("a-7f3c") == [(0, at("2022-05-01 07:00")), (1, at("2022-05-01 07:30"))]
    assert dates("b-19d0") == [
        (0, at("2022-04-02 06:00")),
        (1, at("2022-04-02 06:00")),
        (2, at("2022-04-03 06:00")),
    ]
    assert dates("d-dead") == [
        (0, at("2022-07-01 00:00")),
        (1, at("2022-07-02 00:00")),
        (2, at("2022-07-03 00:00")),
    ]
    # The values stay as the 0.1 rows hold them.
    assert [row.data["created_at"] for row in rows_of(db, "ticket", uuid="a-7f3c")] == [
        None,
        "2022-05-01T07:00:00+00:00",
    ]


@pytest.mark.parametrize("models", ["classic"], indirect=True)
def test_created_at_of_a_joined_subclass_comes_from_the_parent_table(db, models):
    class Document(db.Model, Versioned):
        __tablename__ = "document"
        id = db.Column(db.Integer, primary_key=True)
        kind = db.Column(db.String(20))
        title = db.Column(db.Text)
        created_at = db.Column(db.DateTime(timezone=True))
        __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "document"}

    class Invoice(Document):
        __tablename__ = "invoice"
        id = db.Column(db.Integer, db.ForeignKey("document.id"), primary_key=True)
        total = db.Column(db.Integer)
        __mapper_args__ = {"polymorphic_identity": "invoice"}

    db.create_all()
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE document_history (id integer, kind varchar(20), title text,"
            " created_at timestamptz, version integer, changed timestamptz,"
            " change_info jsonb);"
            "CREATE TABLE invoice_history (id integer, total integer, version integer);"
            "INSERT INTO document VALUES (1, 'invoice', 'March', '2021-03-01 08:00+00', 1);"
            "INSERT INTO invoice VALUES (1, 120);"
            "INSERT INTO document_history VALUES"
            " (1, 'invoice', 'March', null, 0, '2021-03-05 10:00+00', null);"
            "INSERT INTO invoice_history VALUES (1, 100, 0);"
        )
    assert HistoryModelDataConverter(Invoice).convert_all(db.session) == 1
    assert [(row.version, row.changed, row.data["total"]) for row in rows_of(db, "invoice")] == [
        (0, at("2021-03-01 08:00"), 100),
        (1, at("2021-03-05 10:00"), 120),
    ]


@pytest.mark.parametrize("models", ["classic"], indirect=True)
def test_concrete_classes_convert_from_their_own_tables(db, models):
    class Vehicle(db.Model, Versioned):
        __tablename__ = "vehicle"
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.Text)

    class Car(Vehicle):
        __tablename__ = "car"
        __mapper_args__ = {"concrete": True}
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.Text)
        doors = db.Column(db.Integer)
        version = db.Column(db.Integer, default=0)

    db.create_all()
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE vehicle_history (id integer, name text, version integer,"
            " changed timestamptz, change_info jsonb);"
            "CREATE TABLE car_history (id integer, name text, doors integer, version integer,"
            " changed timestamptz, change_info jsonb);"
            "INSERT INTO car (id, name, doors, version) VALUES (1, 'Beetle', 2, 1);"
            "INSERT INTO car_history VALUES (1, 'Beetle', 4, 0, '2020-01-01 00:00+00', null);"
            "INSERT INTO vehicle (id, name, version) VALUES (1, 'Cart', 0);"
        )
    assert HistoryModelDataConverter(Car).convert_all(db.session) == 1
    assert [(row.version, row.data) for row in rows_of(db, "car")] == [
        (0, {"id": 1, "name": "Beetle", "doors": 4, "version": 0}),
        (1, {"id": 1, "name": "Beetle", "doors": 2, "version": 1}),
    ]
    assert HistoryModelDataConverter(Vehicle).convert_all(db.session) == 1
    assert [row.data["name"] for row in rows_of(db, "vehicle")] == ["Cart"]


def test_chrononaut_tablename_names_the_history_table(db, legacy):
    converter = HistoryModelDataConverter(legacy.Legacy)
    assert converter.legacy_table_names == ["legacy_old"]
    assert converter.convert_all(db.session) == 1
    assert [(row.version, row.data["name"]) for row in rows_of(db, "legacy")] == [
        (0, "old name"),
        (1, "new name"),
    ]


def test_converted_objects_answer_history_queries(db, legacy):
    HistoryModelDataConverter(legacy.Todo).convert_all(db.session)
    todo = db.session.get(legacy.Todo, 1)
    assert [snapshot.title for snapshot in todo.versions()] == [
        "Write doc",
        "Write docs",
        "Write docs",
        "Write docs",
    ]
    assert todo.version_at(at("2021-01-01")) is None
    assert todo.version_at(at("2021-01-03 11:00")).priority == "Priority.LOW"
    assert todo.version_at(at("2021-01-03 11:30")).priority == "Priority.HIGH"
    assert todo.version_at(at("2021-01-04 13:00")).done is True
    first, *_, last = todo.versions()
    assert todo.diff(first) == {
        "title": ("Write doc", "Write docs"),
        "priority": ("Priority.LOW", "Priority.HIGH"),
        "done": (False, True),
    }
    assert todo.diff(first, include_hidden=True)["secret"] == (None, "s3")
    assert todo.previous_version().version == 2

    # New changes continue the converted history.
    todo.title = "Write all docs"
    db.session.commit()
    assert [snapshot.version for snapshot in todo.versions()] == [0, 1, 2, 3, 4]
    assert todo.diff(last) == {"title": ("Write docs", "Write all docs")}


def test_chunks_resume_without_duplicates_or_gaps(db, legacy):
    first = HistoryModelDataConverter(legacy.Todo)
    assert first.convert(db.session, limit=1) == 1
    assert first.convert(db.session, limit=2) == 2
    # A new converter (the old process was killed) skips what is done.
    second = HistoryModelDataConverter(legacy.Todo)
    # Objects 1 and 2 are complete: passed over. Of 3 and 4, only 4 needs work.
    assert second.convert(db.session, limit=2) == 1
    assert second.convert(db.session, limit=2) == 0
    assert (second.objects_seen, second.objects_converted, second.snapshots_written) == (4, 1, 1)
    assert HistoryModelDataConverter(legacy.Todo).convert_all(db.session) == 0
    versions: dict[int, list[int]] = {}
    for row in rows_of(db, "todo"):
        versions.setdefault(row.key["id"], []).append(row.version)
    assert versions == {1: [0, 1, 2, 3], 2: [0, 1, 2], 3: [0], 4: [0]}


def test_a_failed_chunk_writes_nothing(db, legacy):
    converter = HistoryModelDataConverter(legacy.Todo)
    assert converter.convert(db.session, limit=1) == 1
    with db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE todo_history SET change_info = '[1]' WHERE id = 2")
    with pytest.raises(ChrononautException, match=r"must be a JSON object or NULL, not \[1\]"):
        converter.convert(db.session, limit=2)
    # The chunk was rolled back, and the session is ready for more.
    assert {row.key["id"] for row in activity_rows(db)} == {1}


def test_update_adds_what_the_old_application_wrote_later(db, legacy):
    converter = HistoryModelDataConverter(legacy.Todo)
    converter.convert_all(db.session)
    converted_at = datetime.now(UTC)
    # The 0.1 application, still running, changes todo 4 twice and deletes todo 3.
    run_sql(db, "after_conversion.sql")

    later = HistoryModelDataConverter(legacy.Todo)
    assert later.update(db.session, update_from=converted_at.isoformat()) == 3
    assert [(row.version, row.data["title"]) for row in rows_of(db, "todo", id=4)] == [
        (0, "New task"),
        (1, "New task!"),
        (2, "New task!!"),
    ]
    assert [(row.version, row.data["title"]) for row in rows_of(db, "todo", id=3)] == [
        (0, "Old task"),
        (1, "Old task"),
    ]
    assert later.update(db.session) == 0
    assert len(activity_rows(db)) == 12


def test_update_finds_new_objects_by_created_at(db, legacy):
    converter = HistoryModelDataConverter(legacy.Ticket, id_column="uuid")
    converter.convert_all(db.session)
    converted_at = datetime.now(UTC)
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO ticket (uuid, title, created_at, version)"
            " VALUES ('d-5a5a', 'Created later', now(), 0)"
        )
        # Created before the conversion started, but missed by it: outside the window.
        connection.exec_driver_sql(
            "INSERT INTO ticket (uuid, title, created_at, version)"
            " VALUES ('0-early', 'Missed', timestamptz '2022-01-01 00:00+00', 0)"
        )
    assert converter.update(db.session, update_from=converted_at) == 1
    assert [row.data["title"] for row in rows_of(db, "ticket", uuid="d-5a5a")] == ["Created later"]
    assert rows_of(db, "ticket", uuid="0-early") == []
    # Without a time, update looks at everything.
    assert converter.update(db.session) == 1
    assert [row.data["title"] for row in rows_of(db, "ticket", uuid="0-early")] == ["Missed"]


@pytest.mark.parametrize(
    "id_column", ["uuid", "id; DROP TABLE todo", ("id", "id"), ("id", "title"), 7]
)
def test_id_column_must_name_the_primary_key(db, legacy, id_column):
    with pytest.raises(ChrononautException, match="does not name the primary key of Todo"):
        HistoryModelDataConverter(legacy.Todo, id_column=id_column)


def test_id_column_may_be_the_attribute_or_the_column_name(db, legacy):
    # Gadget's attributes gadget_id and display_name are the columns id and "DisplayName".
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            'CREATE TABLE gadget_history (id integer, "DisplayName" varchar(80),'
            " version integer, changed timestamptz, change_info jsonb);"
            "INSERT INTO gadget_history VALUES (1, 'Widget', 0, '2021-05-01 00:00+00', null);"
            """INSERT INTO gadget (id, "DisplayName", version) VALUES (1, 'Gizmo', 1);"""
        )
    converted = {}
    for name in ("id", "gadget_id"):
        db.session.rollback()  # its read of the rows would block TRUNCATE
        with db.engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE chrononaut_activity")
        assert HistoryModelDataConverter(legacy.Gadget, id_column=name).convert_all(db.session) == 1
        converted[name] = [(row.key, row.version, row.data) for row in rows_of(db, "gadget")]
    expected = [
        ({"gadget_id": 1}, 0, {"gadget_id": 1, "display_name": "Widget", "version": 0}),
        ({"gadget_id": 1}, 1, {"gadget_id": 1, "display_name": "Gizmo", "version": 1}),
    ]
    assert converted == {"id": expected, "gadget_id": expected}


def test_malicious_history_table_name_fails_cleanly(db, legacy):
    legacy.Legacy.__chrononaut_tablename__ = 'todo"; DROP TABLE todo; --'
    converter = HistoryModelDataConverter(legacy.Legacy)
    with pytest.raises(ChrononautException, match="does not exist"):
        converter.convert(db.session)
    assert db.session.execute(select(func.count()).select_from(legacy.Todo)).scalar() == 3


def test_missing_legacy_columns_are_named(db, legacy):
    with db.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE legacy_old DROP COLUMN changed")
    with pytest.raises(ChrononautException, match="'legacy_old' lacks the column"):
        HistoryModelDataConverter(legacy.Legacy).convert(db.session)


def test_a_column_the_legacy_table_lacks_is_recorded_as_null(db, legacy):
    with db.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE legacy_old DROP COLUMN name")
    HistoryModelDataConverter(legacy.Legacy).convert_all(db.session)
    assert [row.data for row in rows_of(db, "legacy")] == [
        {"id": 1, "name": None, "version": 0},
        {"id": 1, "name": "new name", "version": 1},
    ]


def test_only_versioned_models_convert(db, legacy):
    with pytest.raises(ChrononautException, match="is not a Versioned model"):
        HistoryModelDataConverter(legacy.Note)


def test_update_from_must_be_a_time(db, legacy):
    with pytest.raises(ChrononautException, match="'yesterday' is not an ISO 8601 time"):
        HistoryModelDataConverter(legacy.Todo).update(db.session, update_from="yesterday")


def test_limit_must_be_positive(db, legacy):
    with pytest.raises(ChrononautException, match="positive"):
        HistoryModelDataConverter(legacy.Todo).convert(db.session, limit=0)


def bulk_legacy_sql(objects: int) -> str:
    """``objects`` todos (ids from 11) with five 0.1 history rows each; every fifth of
    them is deleted."""
    return f"""
    INSERT INTO todo_history (id, title, done, version, changed, change_info)
    SELECT object_id, 'todo ' || object_id || ' v' || version, false, version,
           timestamp '2020-01-01' + object_id * interval '1 minute' + version * interval '1 hour',
           jsonb_build_object('user_id', 'user' || version,
                              'extra', jsonb_build_object('n', version))
    FROM generate_series(11, {10 + int(objects)}) AS object_id, generate_series(0, 4) AS version;
    INSERT INTO todo (id, title, done, version)
    SELECT object_id, 'todo ' || object_id || ' v5', true, 5
    FROM generate_series(11, {10 + int(objects)}) AS object_id
    WHERE mod(object_id, 5) <> 0;
    """


@pytest.mark.slow
@pytest.mark.parametrize("models", ["classic"], indirect=True)
def test_100000_legacy_rows_in_chunks(db, legacy, record_property):
    with db.engine.begin() as connection:
        connection.exec_driver_sql(bulk_legacy_sql(20000))
    converter = HistoryModelDataConverter(legacy.Todo)
    assert converter.count(db.session) == 20004
    started = perf_counter()
    chunks = []
    while converted := converter.convert(db.session, limit=5000):
        chunks.append(converted)
    seconds = perf_counter() - started
    assert chunks == [5000, 5000, 5000, 5000, 4]

    activity = db.activity_cls.__table__
    per_version = db.session.execute(
        select(activity.c.version, func.count(), func.count(func.distinct(activity.c.key)))
        .where(activity.c.table_name == "todo", activity.c.key["id"].as_integer() > 10)
        .group_by(activity.c.version)
        .order_by(activity.c.version)
    ).all()
    assert per_version == [(version, 20000, 20000) for version in range(6)]

    def object_rows(todo_id):
        return db.session.execute(
            select(activity)
            .where(activity.c.table_name == "todo", activity.c.key == {"id": todo_id})
            .order_by(activity.c.id)
        ).all()

    deleted = object_rows(20010)
    replaced_at = at("2020-01-01") + timedelta(minutes=20010)
    assert [
        (row.version, row.changed, row.data["title"], row.extra_info) for row in deleted[-3:]
    ] == [
        (3, replaced_at + timedelta(hours=2), "todo 20010 v3", {"n": 2}),
        (4, replaced_at + timedelta(hours=3), "todo 20010 v4", {"n": 3}),
        (5, replaced_at + timedelta(hours=4), "todo 20010 v4", {"n": 4}),
    ]
    live = object_rows(20009)[-1]
    assert (live.version, live.data["title"], live.data["done"]) == (5, "todo 20009 v5", True)

    # In the JUnit XML (--junitxml), not in pytest's progress output.
    record_property("legacy_rows_per_second", round(100000 / seconds))


KILLED_CONVERTER = """
import sys

from flask import Flask

from chrononaut import VersionedSQLAlchemy
from chrononaut.data_converters import HistoryModelDataConverter
from tests.models import define_models

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = sys.argv[1]
db = VersionedSQLAlchemy(app)
models = define_models(db, "classic")
with app.app_context():
    converter = HistoryModelDataConverter(models.Todo)
    while converter.convert(db.session, limit=200):
        print("chunk", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("models", ["classic"], indirect=True)
def test_a_killed_conversion_resumes_without_duplicates_or_gaps(db, legacy, database_url):
    with db.engine.begin() as connection:
        connection.exec_driver_sql(bulk_legacy_sql(4000))
    url = database_url.render_as_string(hide_password=False)
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_CONVERTER, url],
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert [child.stdout.readline() for _ in range(3)] == ["chunk\n"] * 3
        child.send_signal(signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL
    converted_before = {row.key["id"] for row in activity_rows(db)}
    assert 600 <= len(converted_before) < 4004

    converter = HistoryModelDataConverter(legacy.Todo)
    assert converter.convert_all(db.session, limit=1000) == 4004 - len(converted_before)
    activity = db.activity_cls.__table__
    versions = db.session.execute(
        # Grouped by the whole key: psycopg 3 binds each ``key ->> 'id'`` separately, and
        # PostgreSQL does not see two bound expressions as the same GROUP BY term.
        select(activity.c.key, func.array_agg(activity.c.version))
        .where(activity.c.table_name == "todo")
        .group_by(activity.c.key)
    ).all()
    expected = {1: [0, 1, 2, 3], 2: [0, 1, 2], 3: [0], 4: [0]}
    expected.update({todo_id: list(range(6)) for todo_id in range(11, 4011)})
    assert {key["id"]: sorted(object_versions) for key, object_versions in versions} == expected


#: Text PostgreSQL can store (no NUL, no lone surrogates).
TITLES = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=5)


@st.composite
def legacy_objects(draw):
    """Objects as 0.1 left them: their states in order, and whether they were deleted."""
    count = draw(st.integers(min_value=1, max_value=6))
    return [
        {
            "id": object_id,
            "titles": draw(st.lists(TITLES, min_size=1, max_size=5)),
            "deleted": draw(st.booleans()),
            "null_first_version": draw(st.booleans()),
        }
        for object_id in range(1, count + 1)
    ]


def changed_at(todo_id: int, change: int) -> datetime:
    """When change number ``change`` (1, 2, ...) of a todo replaced its state."""
    return at("2021-01-01") + timedelta(days=todo_id, hours=change)


def legacy_rows(todo):
    """The 0.1 history rows and the live row (or None) of one todo."""
    titles = todo["titles"]
    replaced = titles if todo["deleted"] else titles[:-1]
    history = [
        {
            "id": todo["id"],
            "title": title,
            "version": None if index == 0 and todo["null_first_version"] else index,
            "changed": changed_at(todo["id"], index + 1),
            "change_info": {"user_id": f"user {index + 1}", "extra": {"change": index + 1}},
        }
        for index, title in enumerate(replaced)
    ]
    live = None
    if not todo["deleted"]:
        version = len(titles) - 1
        if version == 0 and todo["null_first_version"]:
            version = None
        live = {"id": todo["id"], "title": titles[-1], "version": version}
    return history, live


def expected_snapshots(todo):
    """(version, changed, title, user_info, extra_info) from the states directly: state i
    began with change i, and a delete adds the last state once more."""
    titles = list(todo["titles"])
    if todo["deleted"]:
        titles.append(titles[-1])
    return [
        (
            version,
            changed_at(todo["id"], max(version, 1)) if len(titles) > 1 else None,
            title,
            {"user_id": f"user {version}"} if version else {},
            {"change": version} if version else {},
        )
        for version, title in enumerate(titles)
    ]


@pytest.mark.parametrize("models", ["classic"], indirect=True)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    todos=legacy_objects(),
    limit=st.integers(min_value=1, max_value=4),
    interrupted_after=st.integers(min_value=0, max_value=3),
)
def test_any_history_converts_to_the_states_in_order(db, models, todos, limit, interrupted_after):
    # The session's read transaction of the previous example would block TRUNCATE.
    db.session.rollback()
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "DROP TABLE IF EXISTS todo_history;"
            "CREATE TABLE todo_history (id integer, title varchar(80), text text,"
            " done boolean, priority priority, due_at timestamptz, version integer,"
            " changed timestamptz, change_info jsonb);"
            "TRUNCATE todo, chrononaut_activity;"
        )
        history_table = Table("todo_history", MetaData(), autoload_with=connection)
        for todo in todos:
            history, live = legacy_rows(todo)
            if history:
                connection.execute(history_table.insert(), history)
            if live:
                connection.execute(models.Todo.__table__.insert(), live)

    first = HistoryModelDataConverter(models.Todo)
    for _ in range(interrupted_after):
        first.convert(db.session, limit=limit)
    # A new process takes over from wherever the first one stopped.
    second = HistoryModelDataConverter(models.Todo)
    while second.convert(db.session, limit=limit):
        pass

    for todo in todos:
        converted = [
            (row.version, row.changed, row.data["title"], row.user_info, row.extra_info)
            for row in rows_of(db, "todo", id=todo["id"])
        ]
        expected = expected_snapshots(todo)
        if expected[0][1] is None:  # never changed: dated by the conversion
            expected[0] = (0, converted[0][1], *expected[0][2:])
        assert converted == expected


#: Discriminators of objects in the animal table alone: mapped ones, one no class
#: claims any more, and NULL. Dogs were "hound" before that identity was renamed.
ANIMAL_KINDS = st.sampled_from(["animal", "cat", "hamster", None])
#: The kind of a dog's state, and whether it has its dog_history row: dogs were "hound"
#: before that identity was renamed, and states recorded before Dog had a table of its
#: own have no dog_history row.
DOG_STATES = st.sampled_from([("dog", True), ("hound", True), ("dog", False)])


@st.composite
def legacy_animals(draw):
    """Animals and dogs as 0.1 left them: the kind of each state, and whether deleted."""
    animals = []
    for animal_id in range(1, draw(st.integers(min_value=1, max_value=5)) + 1):
        dog = draw(st.booleans())
        if dog:
            states = draw(st.lists(DOG_STATES, min_size=1, max_size=4))
        else:
            kinds = draw(st.lists(ANIMAL_KINDS, min_size=1, max_size=4))
            states = [(kind, False) for kind in kinds]
        animals.append(
            {
                "id": animal_id,
                "dog": dog,
                "kinds": [kind for kind, _ in states],
                "dog_rows": [dog_row for _, dog_row in states],
                "deleted": draw(st.booleans()),
            }
        )
    return animals


def animal_state(animal, index):
    """The columns of state ``index`` of ``animal``, by table."""
    kind = animal["kinds"][index]
    name = f"{animal['id']}.{index}"
    row = {"id": animal["id"], "kind": kind, "name": name, "indoor": kind == "cat" or None}
    dog_row = {"id": animal["id"], "breed": f"breed {index}"}
    # A live dog always has its dog row.
    live = index == len(animal["kinds"]) - 1 and not animal["deleted"]
    return row, dog_row if animal["dog"] and (live or animal["dog_rows"][index]) else None


def expected_animal_snapshots(animal):
    """(version, data, user_info) from the states directly, with the columns of the
    class that claims each kind (the converted model's for unclaimed kinds)."""
    indexes = list(range(len(animal["kinds"])))
    if animal["deleted"]:
        indexes.append(indexes[-1])
    expected = []
    for version, index in enumerate(indexes):
        row, dog_row = animal_state(animal, index)
        data = {"id": row["id"], "kind": row["kind"], "name": row["name"], "version": version}
        if row["kind"] == "cat":
            data["indoor"] = True
        if animal["dog"]:
            data["breed"] = dog_row["breed"] if dog_row else None
        expected.append((version, data, {"user_id": f"user {version}"} if version else {}))
    return expected


@pytest.mark.parametrize("models", ["classic"], indirect=True)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(animals=legacy_animals(), limit=st.integers(min_value=1, max_value=3))
def test_any_polymorphic_history_converts_every_row_once(db, models, caplog, animals, limit):
    db.session.rollback()
    caplog.clear()
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "DROP TABLE IF EXISTS dog_history, animal_history;"
            "CREATE TABLE animal_history (id integer, kind varchar(20), name varchar(40),"
            " indoor boolean, version integer, changed timestamptz, change_info jsonb);"
            "CREATE TABLE dog_history (id integer, breed varchar(40), version integer);"
            "TRUNCATE animal, dog, chrononaut_activity;"
        )
        metadata = MetaData()
        animal_history = Table("animal_history", metadata, autoload_with=connection)
        dog_history = Table("dog_history", metadata, autoload_with=connection)
        for animal in animals:
            states = len(animal["kinds"])
            for index in range(states if animal["deleted"] else states - 1):
                row, dog_row = animal_state(animal, index)
                connection.execute(
                    animal_history.insert(),
                    {
                        **row,
                        "version": index,
                        "changed": changed_at(animal["id"], index + 1),
                        "change_info": {"user_id": f"user {index + 1}"},
                    },
                )
                if dog_row:
                    connection.execute(dog_history.insert(), {**dog_row, "version": index})
            if not animal["deleted"]:
                row, dog_row = animal_state(animal, states - 1)
                connection.execute(models.Animal.__table__.insert(), {**row, "version": states - 1})
                if dog_row:
                    connection.execute(models.Dog.__table__.insert(), dog_row)

    with caplog.at_level(logging.WARNING, logger="chrononaut"):
        for model in (models.Animal, models.Dog):
            converter = HistoryModelDataConverter(model)
            while converter.convert(db.session, limit=limit):
                pass
    assert caplog.messages == []
    for animal in animals:
        table_name, other = ("dog", "animal") if animal["dog"] else ("animal", "dog")
        converted = [
            (row.version, row.data, row.user_info)
            for row in rows_of(db, table_name, id=animal["id"])
        ]
        assert converted == expected_animal_snapshots(animal)
        assert rows_of(db, other, id=animal["id"]) == []


# -- the examples of docs/migration.rst ------------------------------------------------

SNIPPETS = Path(__file__).parent.parent / "docs" / "snippets"


def test_the_documented_example_converts_as_the_docs_show(db, models, caplog):
    legacy = load_legacy(db, models, data=SNIPPETS / "history_0_1.sql")
    with caplog.at_level(logging.WARNING, logger="chrononaut"):
        assert HistoryModelDataConverter(legacy.Todo).convert_all(db.session) == 2
        animals = HistoryModelDataConverter(legacy.Animal)
        assert animals.convert_all(db.session) == 0
        assert animals.subclasses_left == [legacy.Dog]
        assert HistoryModelDataConverter(legacy.Dog).convert_all(db.session) == 1
    assert caplog.messages == []

    def converted(table_name, *columns, **key):
        return [
            (
                row.version,
                row.changed,
                *(row.data[name] for name in columns),
                row.user_info,
                row.extra_info,
            )
            for row in rows_of(db, table_name, **key)
        ]

    ada, bob = {"user_id": "ada"}, {"user_id": "bob"}
    assert converted("todo", "title", "done", id=7) == [
        (0, at("2021-03-02 10:00"), "Write doc", False, {}, {}),
        (1, at("2021-03-02 10:00"), "Write the docs", False, ada, {"rationale": "typo"}),
        (2, at("2021-03-03 09:00"), "Write the docs", True, bob, {}),
    ]
    assert converted("todo", "title", id=8) == [
        (0, at("2021-02-01 08:00"), "Buy milk", {}, {}),
        (1, at("2021-02-01 08:00"), "Buy oat milk", ada, {}),
        (2, at("2021-02-05 18:00"), "Buy oat milk", bob, {"rationale": "bought"}),
    ]
    assert converted("dog", "name", "breed", id=1) == [
        (0, at("2020-06-01 12:00"), "Rex", "Mutt", {}, {}),
        (1, at("2020-06-01 12:00"), "Rex", "Collie", ada, {}),
    ]
    assert rows_of(db, "animal") == []


SNIPPET_APP = """
from flask import Flask

from chrononaut import Versioned, VersionedSQLAlchemy

db = VersionedSQLAlchemy()


class Customer(db.Model, Versioned):
    __tablename__ = "customer"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.Text)


class Voucher(db.Model, Versioned):
    __tablename__ = "voucher"
    uuid = db.Column(db.Text, primary_key=True)
    amount = db.Column(db.Integer)


class Translation(db.Model, Versioned):
    __tablename__ = "translation"
    locale = db.Column(db.Text, primary_key=True)
    slug = db.Column(db.Text, primary_key=True)
    text = db.Column(db.Text)


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = {url!r}
    db.init_app(app)
    return app
"""

SNIPPET_APP_HISTORY = """
CREATE TABLE customer_history (id integer, name text, version integer,
                               changed timestamptz, change_info jsonb);
CREATE TABLE voucher_history (uuid text, amount integer, version integer,
                              changed timestamptz, change_info jsonb);
CREATE TABLE translation_history (locale text, slug text, text text, version integer,
                                  changed timestamptz, change_info jsonb);
INSERT INTO customer VALUES (1, 'Ada Ltd', 1), (2, 'Bob plc', 0);
INSERT INTO customer_history VALUES (1, 'Ada', 0, '2020-01-01 00:00+00', null);
INSERT INTO voucher VALUES ('v-1', 20, 1);
INSERT INTO voucher_history VALUES ('v-1', 10, 0, '2020-01-02 00:00+00', null);
INSERT INTO translation VALUES ('de', 'hi', 'Hallo', 0);
"""


@pytest.fixture
def snippet_app(tmp_path, database_url, monkeypatch):
    """The ``myapp`` that docs/snippets/convert_history.py imports, with 0.1 tables."""
    url = database_url.render_as_string(hide_password=False)
    (tmp_path / "myapp.py").write_text(SNIPPET_APP.format(url=url))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "myapp", raising=False)
    myapp = importlib.import_module("myapp")
    app = myapp.create_app()
    with app.app_context():
        myapp.db.create_all()
        with myapp.db.engine.begin() as connection:
            connection.exec_driver_sql(SNIPPET_APP_HISTORY)
        path = SNIPPETS / "convert_history.py"
        spec = importlib.util.spec_from_file_location("convert_history", path)
        snippet = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(snippet)
        yield myapp, snippet
        myapp.db.session.remove()
        myapp.db.engine.dispose()
    sys.modules.pop("myapp", None)


def snippet_rows(myapp):
    activity = myapp.db.activity_cls.__table__
    query = select(activity.c.table_name, activity.c.key, activity.c.version)
    return [tuple(row) for row in myapp.db.session.execute(query.order_by(activity.c.id))]


def test_the_documented_conversion_runs(snippet_app):
    myapp, snippet = snippet_app
    snippet.convert_everything()
    assert snippet_rows(myapp) == [
        ("customer", {"id": 1}, 0),
        ("customer", {"id": 1}, 1),
        ("customer", {"id": 2}, 0),
        ("voucher", {"uuid": "v-1"}, 0),
        ("voucher", {"uuid": "v-1"}, 1),
        ("translation", {"locale": "de", "slug": "hi"}, 0),
    ]


def test_the_documented_conversion_of_a_live_system_runs(snippet_app):
    myapp, snippet = snippet_app
    started = snippet.convert_while_the_old_application_runs()
    myapp.db.session.rollback()
    # The 0.1 application renames customer 2 meanwhile.
    with myapp.db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO customer_history VALUES (2, 'Bob plc', 0, now(), null);"
            "UPDATE customer SET name = 'Bob Ltd', version = 1 WHERE id = 2;"
        )
    assert snippet.convert_what_it_wrote_since(started) == 1
    customer = myapp.db.session.get(myapp.Customer, 2)
    assert [snapshot.name for snapshot in customer.versions()] == ["Bob plc", "Bob Ltd"]
