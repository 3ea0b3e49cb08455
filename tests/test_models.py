"""``HistorySnapshot``, and the ``chrononaut_activity`` table that holds the snapshots."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import Table, insert, inspect, select, text
from sqlalchemy.orm import DeclarativeBase

from chrononaut import ChrononautException, Versioned, rationale
from chrononaut.exceptions import (
    ChrononautRelationshipError,
    HiddenAttributeError,
    UntrackedAttributeError,
)
from chrononaut.history.partitions import partition_interval
from chrononaut.models import HistorySnapshot, activity_factory
from tests.activity import activity_rows

READ_ONLY = f"^{re.escape('Cannot modify a HistorySnapshot model.')}$"
JSON_COLUMNS = ("key", "data", "user_info", "extra_info")


def _todo_snapshots(session, models):
    """A Todo with snapshots: created ("Buy milk"), retitled, then a hidden-only change."""
    todo = models.Todo(title="Buy milk", secret="s0", starred=False)
    session.add(todo)
    session.commit()
    todo.title = "Buy oat milk"
    session.commit()
    todo.secret = "s1"
    session.commit()
    return todo, todo.versions()


# -- reading a snapshot ---------------------------------------------------------------


def test_tracked_values_read_as_attributes(session, models):
    todo, (first, second, third) = _todo_snapshots(session, models)

    assert (first.title, first.version, first.id, first.done) == ("Buy milk", 0, todo.id, False)
    assert (second.title, second.version) == ("Buy oat milk", 1)
    assert (third.title, third.version) == ("Buy oat milk", 2)


def test_hidden_untracked_and_unknown_attributes(session, models):
    _, (snapshot, *_) = _todo_snapshots(session, models)

    with pytest.raises(HiddenAttributeError):
        snapshot.secret  # noqa: B018
    with pytest.raises(UntrackedAttributeError):
        snapshot.starred  # noqa: B018
    with pytest.raises(AttributeError) as unknown:
        snapshot.no_such_column  # noqa: B018
    assert not isinstance(unknown.value, (HiddenAttributeError, UntrackedAttributeError))


def test_a_snapshot_of_a_model_that_is_not_versioned_reads_the_same_way(session, models):
    snapshot = HistorySnapshot(
        table_name="note",
        changed=datetime.now(timezone.utc),
        version=0,
        key={"id": 1},
        data={"id": 1},
        extra_info={"hidden_cols_changed": ["body"]},
        model=models.Note,
    )

    assert snapshot.id == 1
    with pytest.raises(HiddenAttributeError):
        snapshot.body  # noqa: B018
    with pytest.raises(AttributeError) as unknown:
        snapshot.nothing  # noqa: B018
    assert not isinstance(unknown.value, (HiddenAttributeError, UntrackedAttributeError))


def test_attribute_errors_are_attribute_errors(session, models):
    user = models.User(name="ann", email="ann@example.com", password="secret", login_count=3)
    session.add(user)
    session.commit()
    (snapshot,) = user.versions()

    for error in (HiddenAttributeError, UntrackedAttributeError, ChrononautRelationshipError):
        assert issubclass(error, AttributeError)
        assert issubclass(error, ChrononautException)
    with pytest.raises(HiddenAttributeError):
        snapshot.password  # noqa: B018
    with pytest.raises(UntrackedAttributeError):
        snapshot.login_count  # noqa: B018
    assert getattr(snapshot, "password", None) is None
    assert getattr(snapshot, "login_count", None) is None
    assert getattr(snapshot, "no_such_column", None) is None
    assert not hasattr(snapshot, "password")
    assert snapshot.name == "ann"


def test_relationships_raise_relationship_error(session, models):
    author = models.Author(name="Le Guin")
    book = models.Book(title="The Dispossessed", author=author, tags=[models.Tag(name="sf")])
    session.add(book)
    session.commit()
    (snapshot,) = book.versions()

    assert snapshot.author_id == author.id
    with pytest.raises(ChrononautRelationshipError):
        snapshot.author  # noqa: B018
    with pytest.raises(ChrononautRelationshipError):
        snapshot.tags  # noqa: B018
    with pytest.raises(ChrononautRelationshipError):
        author.versions()[0].books  # noqa: B018


def test_snapshots_are_read_only(session, models):
    _, (snapshot, *_) = _todo_snapshots(session, models)

    with pytest.raises(ChrononautException, match=READ_ONLY):
        snapshot.title = "changed"
    with pytest.raises(ChrononautException, match=READ_ONLY):
        snapshot.new_attribute = 1
    with pytest.raises(ChrononautException, match=READ_ONLY):
        snapshot._data = {}
    with pytest.raises(ChrononautException, match=READ_ONLY):
        snapshot.chrononaut_meta = {}
    with pytest.raises(ChrononautException, match=READ_ONLY):
        del snapshot.title
    with pytest.raises(ChrononautException, match=READ_ONLY):
        del snapshot._data
    with pytest.raises(ChrononautException, match=READ_ONLY):
        del snapshot.no_such_column
    with pytest.raises(ChrononautException, match=READ_ONLY):
        snapshot.chrononaut_version = 7
    with pytest.raises(TypeError):
        snapshot.chrononaut_data["title"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        snapshot.chrononaut_key["id"] = 0  # type: ignore[index]
    assert snapshot.title == "Buy milk"
    assert snapshot.chrononaut_data["title"] == "Buy milk"


def test_chrononaut_meta(session, models):
    todo, (first, second, third) = _todo_snapshots(session, models)
    with rationale("tidy up"):
        todo.text = "2 litres"
        session.commit()
    fourth = todo.versions()[-1]

    for snapshot in (first, second, third, fourth):
        meta = snapshot.chrononaut_meta
        assert set(meta) == {"table_name", "changed", "user_info", "extra_info"}
        assert meta["table_name"] == "todo"
        assert isinstance(meta["changed"], datetime)
        assert meta["changed"].utcoffset() is not None
        assert meta["user_info"] == {"user_id": None, "remote_addr": None}
    assert first.chrononaut_meta["extra_info"] == {"hidden_cols_changed": ["secret"]}
    assert second.chrononaut_meta["extra_info"] == {}
    assert third.chrononaut_meta["extra_info"] == {"hidden_cols_changed": ["secret"]}
    assert fourth.chrononaut_meta["extra_info"] == {"rationale": "tidy up"}


def test_public_accessors_hold_the_stored_row(db, session, models):
    _, snapshots = _todo_snapshots(session, models)
    rows = activity_rows(db)

    assert len(rows) == len(snapshots) == 3
    for snapshot, row in zip(snapshots, rows, strict=True):
        assert snapshot.chrononaut_data == row.data
        assert snapshot.chrononaut_key == row.key
        assert snapshot.chrononaut_version == row.version
        assert snapshot.chrononaut_model is models.Todo
        assert snapshot.chrononaut_activity_id == row.id
        assert snapshot.chrononaut_changed == row.changed
        assert snapshot.chrononaut_user_info == row.user_info
        assert snapshot.chrononaut_extra_info == row.extra_info
        assert snapshot.chrononaut_meta == {
            "table_name": row.table_name,
            "changed": row.changed,
            "user_info": row.user_info,
            "extra_info": row.extra_info,
        }
    assert [snapshot.chrononaut_version for snapshot in snapshots] == [0, 1, 2]
    assert snapshots[0].chrononaut_key == {"id": snapshots[0].id}


def test_the_original_private_fields_still_hold_the_stored_row(db, session, models):
    # Applications written for the original read these.
    _, snapshots = _todo_snapshots(session, models)
    for snapshot, row in zip(snapshots, activity_rows(db), strict=True):
        assert snapshot._data == row.data
        assert snapshot._key == row.key
        assert snapshot._version == row.version
        assert snapshot._model is models.Todo
        assert snapshot._activity_id == row.id


def test_snapshot_diff(session, models):
    _, (first, second, third) = _todo_snapshots(session, models)

    assert first.diff(second) == {"title": ("Buy milk", "Buy oat milk")}
    assert second.diff(first) == {"title": ("Buy oat milk", "Buy milk")}
    assert second.diff(third) == {}
    assert first.diff(first) == {}


def test_equality(db, session, models):
    todo, (first, second, _) = _todo_snapshots(session, models)
    row = activity_rows(db)[0]
    session.expunge_all()
    reloaded = session.get(models.Todo, todo.id).versions()

    assert reloaded[0] == first
    assert reloaded[1] == second
    assert HistorySnapshot.from_activity(row, models.Todo) == first
    assert first != second
    assert reloaded[0] != reloaded[1]
    assert first != "Buy milk"


def test_str_names_table_time_and_data(session, models):
    _, (snapshot, *_) = _todo_snapshots(session, models)
    changed = snapshot.chrononaut_meta["changed"]

    described = str(snapshot)

    assert "todo" in described
    assert changed.isoformat() in described or str(changed) in described
    assert "title" in described
    assert "Buy milk" in described


# -- the activity table ---------------------------------------------------------------


def test_activity_table_columns(db, models):
    columns = {
        row.column_name: row
        for row in db.session.execute(
            text(
                "SELECT column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_name = 'chrononaut_activity'"
            )
        )
    }

    assert {name: row.data_type for name, row in columns.items()} == {
        "id": "bigint",
        "table_name": "text",
        "changed": "timestamp with time zone",
        "version": "integer",
        "key": "jsonb",
        "data": "jsonb",
        "user_info": "jsonb",
        "extra_info": "jsonb",
        "operation": "text",
        "transaction_id": "bigint",
    }
    # Rows written before 1.0 have no operation or transaction id.
    nullable = {name for name, row in columns.items() if row.is_nullable == "YES"}
    assert nullable == {"operation", "transaction_id"}
    for name in JSON_COLUMNS:
        assert columns[name].column_default == "'{}'::jsonb"
    primary_key = inspect(db.engine).get_pk_constraint("chrononaut_activity")
    # The partitioned layout must have its partition key in the primary key.
    partitioned = partition_interval(db.activity_cls.__table__) is not None
    assert primary_key["constrained_columns"] == (["id", "changed"] if partitioned else ["id"])


def test_json_columns_default_to_an_empty_object(db, models):
    table = db.metadata._activity_cls.__table__
    changed = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    db.session.execute(insert(table).values(table_name="todo", changed=changed, version=3))

    (row,) = db.session.execute(select(table)).all()

    assert (row.table_name, row.changed, row.version) == ("todo", changed, 3)
    assert isinstance(row.id, int)
    assert [getattr(row, name) for name in JSON_COLUMNS] == [{}, {}, {}, {}]


def test_activity_index(db, models):
    indexes = {
        index["name"]: (
            index["column_names"],
            index["dialect_options"].get("postgresql_using"),
            index["dialect_options"].get("postgresql_where"),
        )
        for index in inspect(db.engine).get_indexes("chrononaut_activity")
    }

    # The read index replaces the original (key, table_name) one, which it leads with.
    assert indexes == {
        "ix_chrononaut_activity_table_name_key_changed": (
            ["table_name", "key", "changed", "id"],
            None,
            None,
        ),
        "ix_chrononaut_activity_transaction_id": (["transaction_id"], "brin", None),
        "ix_chrononaut_activity_without_operation": (["table_name"], None, "(operation IS NULL)"),
    }


def test_activity_factory_places_the_table_in_a_schema(db):
    class Base(DeclarativeBase):
        pass

    class OtherBase(DeclarativeBase):
        pass

    activity = activity_factory(Base, schema="audit")
    default_activity = activity_factory(OtherBase)

    assert isinstance(activity.__table__, Table)
    assert (activity.__table__.schema, activity.__table__.name) == ("audit", "chrononaut_activity")
    assert Base.metadata.tables["audit.chrononaut_activity"] is activity.__table__
    assert default_activity.__table__.schema is None
    assert "chrononaut_activity" in OtherBase.metadata.tables

    with db.engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA audit"))
        Base.metadata.create_all(connection)
    tables = inspect(db.engine).get_table_names(schema="audit")
    assert tables == ["chrononaut_activity"]


def test_attribute_names_of_the_snapshot_accessors_are_refused(db):
    # Snapshot accessors are named chrononaut_*; a column of that name would be hidden
    # behind one of them, so the model fails when it is declared.
    with pytest.raises(ChrononautException, match=r"Clash: .*'chrononaut_'.*chrononaut_key"):

        class Clash(db.Model, Versioned):
            __tablename__ = "clash"
            id = db.Column(db.Integer, primary_key=True)
            chrononaut_key = db.Column(db.Text)
