"""The extension: registration, sessions, the activity model and the version column."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session
from sqlalchemy import inspect, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session
from sqlalchemy.orm.exc import UnmappedInstanceError

from chrononaut import ChrononautException, Versioned, VersionedSession, VersionedSQLAlchemy
from tests.activity import activity_rows
from tests.models import define_models


def test_is_a_flask_sqlalchemy_extension_with_versioned_sessions(db):
    assert isinstance(db, SQLAlchemy)
    assert isinstance(db.session, scoped_session)
    assert isinstance(db.session(), VersionedSession)
    assert issubclass(VersionedSession, Session)
    assert db.activity_cls is db.metadata._activity_cls
    assert db.activity_cls.__tablename__ == "chrononaut_activity"


def test_init_app_factory_records_history(app):
    db = VersionedSQLAlchemy()
    models = define_models(db, "typed")
    db.init_app(app)
    db.create_all()
    todo = models.Todo(title="factory")
    db.session.add(todo)
    db.session.commit()
    assert app.extensions["chrononaut"] is db
    assert [snapshot.title for snapshot in todo.versions()] == ["factory"]
    db.session.remove()
    db.engine.dispose()


def test_init_app_sets_config_defaults_without_overriding(database_url):
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url.render_as_string(hide_password=False)
    app.config["CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO"] = True
    VersionedSQLAlchemy(app)
    assert app.config["CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO"] is True
    assert app.config["CHRONONAUT_EXTRA_CHANGE_INFO_FUNC"] is None


def test_registering_twice_on_one_app_is_refused(app, db):
    with pytest.raises(RuntimeError):
        db.init_app(app)


def test_a_session_class_that_is_not_versioned_is_refused(app):
    with pytest.raises(ChrononautException, match=r"must subclass chrononaut\.VersionedSession"):
        VersionedSQLAlchemy(app, session_options={"class_": Session})


def test_bound_test_sessions_from_make_scoped_session_are_versioned(db, models):
    # The fixture pattern applications use: one connection, an outer transaction, and
    # a session joined to it through Flask-SQLAlchemy's private _make_scoped_session.
    # This fails if Flask-SQLAlchemy stops routing it through _make_session_factory.
    connection = db.engine.connect()
    outer = connection.begin()
    bound = db._make_scoped_session(
        {"bind": connection, "join_transaction_mode": "create_savepoint"}
    )
    try:
        assert isinstance(bound(), VersionedSession)
        todo = models.Todo(title="bound")
        bound.add(todo)
        bound.commit()
        todo.title = "bound again"
        bound.commit()
        assert [snapshot.version for snapshot in todo.versions()] == [0, 1]
    finally:
        bound.remove()
        outer.rollback()
        connection.close()
    assert activity_rows(db) == []
    assert db.session.query(models.Todo).count() == 0


def test_activity_table_is_created_with_the_models(db, models):
    tables = inspect(db.engine).get_table_names()
    assert "chrononaut_activity" in tables


def test_legacy_attributes_are_accepted_and_make_no_tables(db, models):
    tables = set(inspect(db.engine).get_table_names())
    assert not {name for name in tables if name.endswith("_history")}
    assert "legacy_old" not in tables
    legacy = models.Legacy(name="old")
    db.session.add(legacy)
    db.session.commit()
    assert [snapshot.name for snapshot in legacy.versions()] == ["old"]


def test_version_column_is_added_once_per_hierarchy(db, models):
    columns = {
        table: {column["name"] for column in inspect(db.engine).get_columns(table)}
        for table in ("todo", "animal", "dog")
    }
    assert "version" in columns["todo"]
    assert "version" in columns["animal"]
    assert "version" not in columns["dog"]
    version = models.Todo.__table__.c.version
    assert version.nullable
    assert version.default.arg == 0


def test_model_that_declares_its_own_version_keeps_it(db):
    class Page(db.Model, Versioned):
        __tablename__ = "page"
        id = db.Column(db.Integer, primary_key=True)
        version = db.Column(db.Integer, nullable=False, default=0)

    assert Page.__table__.c.version.nullable is False


@pytest.mark.parametrize("default", [None, 5])
def test_a_declared_version_column_without_default_zero_still_starts_at_zero(db, default):
    # The flush leaves version 0 to the mixin's column default; other columns get it set.
    class Page(db.Model, Versioned):
        __tablename__ = "page"
        id = db.Column(db.Integer, primary_key=True)
        title = db.Column(db.String)
        version = db.Column(db.Integer, default=default)

    db.create_all()
    page = Page(title="first")
    db.session.add(page)
    db.session.commit()

    assert page.version == 0
    assert [snapshot.version for snapshot in page.versions()] == [0]


def test_null_version_counts_as_zero(db, models):
    todo = models.Todo(title="before the mixin")
    db.session.add(todo)
    db.session.commit()
    db.session.execute(text("UPDATE todo SET version = NULL"))
    db.session.commit()
    todo.title = "after the mixin"
    db.session.commit()
    assert todo.version == 1
    assert [snapshot.version for snapshot in todo.versions()] == [0, 1]
    db.session.delete(todo)
    db.session.commit()
    assert todo.versions()[-1].version == 2


def test_declarative_base_model_class(app):
    class Base(DeclarativeBase):
        pass

    db = VersionedSQLAlchemy(app, model_class=Base)

    class Invoice(db.Model, Versioned):
        __tablename__ = "invoice"
        id: Mapped[int] = mapped_column(primary_key=True)
        total: Mapped[int]

    db.create_all()
    invoice = Invoice(total=10)
    db.session.add(invoice)
    db.session.commit()
    invoice.total = 12
    db.session.commit()
    assert [snapshot.total for snapshot in invoice.versions()] == [10, 12]
    assert db.activity_cls.__table__.metadata is Invoice.__table__.metadata
    db.session.remove()
    db.engine.dispose()


def test_deleting_an_unmapped_object_keeps_sqlalchemys_error(db):
    with pytest.raises(UnmappedInstanceError):
        db.session.delete(object())
