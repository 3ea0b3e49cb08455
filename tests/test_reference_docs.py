"""What the original project's user guide promises, where no other test already proves it.

Each test is named after one statement of ``reference/chrononaut-docs-index.rst``.
Two statements of the guide are slips rather than behaviour and have no test here: it
calls ``changed`` a JSON column (it is ``timestamptz``, in the original's table too),
and says rows hold the values before each change (since 0.2 they hold the state after
it, as the contract says).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import inspect
from sqlalchemy.ext.declarative import ConcreteBase

from chrononaut import ChrononautException, Versioned, VersionedSQLAlchemy
from tests.activity import activity_rows, rows_of


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- Getting started ----------------------------------------------------------------------


def test_a_plain_flask_sqlalchemy_database_does_not_version(app):
    plain_app = Flask(__name__)
    plain_app.config["SQLALCHEMY_DATABASE_URI"] = app.config["SQLALCHEMY_DATABASE_URI"]
    plain = SQLAlchemy(plain_app)

    class Thing(plain.Model, Versioned):
        __tablename__ = "thing"
        id = plain.Column(plain.Integer, primary_key=True)
        name = plain.Column(plain.Text)

    with plain_app.app_context():
        try:
            plain.create_all()
            thing = Thing(name="a")
            plain.session.add(thing)
            plain.session.commit()
            thing.name = "b"
            plain.session.commit()

            assert thing.version == 0
            assert inspect(plain.engine).get_table_names() == ["thing"]
            with pytest.raises(ChrononautException, match="Thing has no activity table"):
                thing.versions()
        finally:
            plain.session.remove()
            plain.engine.dispose()


def test_only_models_with_the_versioned_mixin_get_history(db, session, models):
    # Note is a plain (RecordChanges) model: the extension versions it no more than
    # Flask-SQLAlchemy's SQLAlchemy would.
    note = models.Note(body="v0")
    session.add(note)
    session.commit()
    note.body = "v1"
    session.commit()
    assert activity_rows(db) == []

    session.add(models.Todo(title="versioned"))
    session.commit()
    assert [row.table_name for row in activity_rows(db)] == ["todo"]


def test_the_first_version_tells_whether_the_email_changed_since_sign_up(session, models):
    session.add(models.User(name="ann", email="ann@example.com", password="pw"))
    session.commit()
    session.expunge_all()

    user = models.User.query.first()
    original = user.versions()[0]
    assert original.email == user.email == "ann@example.com"

    user.email = "ann@example.org"
    session.commit()
    session.expunge_all()

    user = models.User.query.first()
    original = user.versions()[0]
    assert (original.version, original.email) == (0, "ann@example.com")
    assert original.email != user.email


# -- Known issues -------------------------------------------------------------------------


def test_adding_a_column_to_the_primary_key_hides_the_versions_before_it(app, db):
    # The application before the change: `document` keyed by id alone, with its own
    # extension, as a deployment of the older code would have recorded it.
    before = Flask(__name__)
    before.config["SQLALCHEMY_DATABASE_URI"] = app.config["SQLALCHEMY_DATABASE_URI"]
    old_db = VersionedSQLAlchemy(before)

    class OldDocument(old_db.Model, Versioned):
        __tablename__ = "document"
        id = old_db.Column(old_db.Integer, primary_key=True)
        title = old_db.Column(old_db.Text)

    with before.app_context():
        old_db.create_all()
        old_doc = OldDocument(id=1, title="a")
        old_db.session.add(old_doc)
        old_db.session.commit()
        between = _now()
        old_doc.title = "b"
        old_db.session.commit()
        after = _now()
        old_db.session.remove()
        old_db.engine.dispose()

    # The migration adds `lang` to the key; the new model declares it.
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "ALTER TABLE document ADD COLUMN lang text NOT NULL DEFAULT 'en';"
            "ALTER TABLE document DROP CONSTRAINT document_pkey;"
            "ALTER TABLE document ADD PRIMARY KEY (id, lang);"
        )

    class Document(db.Model, Versioned):
        __tablename__ = "document"
        id = db.Column(db.Integer, primary_key=True)
        lang = db.Column(db.Text, primary_key=True)
        title = db.Column(db.Text)

    doc = db.session.get(Document, (1, "en"))
    assert (doc.title, doc.version) == ("b", 1)
    assert doc.versions() == []
    assert doc.version_at(after) is None
    assert doc.previous_version() is None
    assert doc.has_changed_since(between) is False
    assert doc.diff(None) == {}
    # The rows are still in the table, under the old key.
    assert [(row.key, row.version) for row in rows_of(db, "document")] == [
        ({"id": 1}, 0),
        ({"id": 1}, 1),
    ]

    doc.title = "c"
    db.session.commit()
    assert [(snapshot.version, snapshot.title) for snapshot in doc.versions()] == [(2, "c")]


def test_a_concrete_subclass_sees_its_history_and_its_base_class_does_not(db):
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
    cart = Vehicle(id=1, name="Cart")
    car = Car(id=1, name="Beetle", doors=2)
    db.session.add_all([cart, car])
    db.session.commit()
    car.doors = 4
    db.session.commit()

    assert [(snapshot.version, snapshot.doors) for snapshot in car.versions()] == [(0, 2), (1, 4)]
    # Same key, base class: only the base table's own object is seen.
    assert [snapshot.name for snapshot in cart.versions()] == ["Cart"]
    assert [row.version for row in rows_of(db, "car", id=1)] == [0, 1]
    assert [row.version for row in rows_of(db, "vehicle", id=1)] == [0]


def test_a_concrete_base_table_hierarchy_keeps_the_history_of_its_subclasses(db):
    class Vehicle(ConcreteBase, db.Model, Versioned):
        __tablename__ = "vehicle"
        __mapper_args__ = {"polymorphic_identity": "vehicle", "concrete": True}
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.Text)

    class Car(Vehicle):
        __tablename__ = "car"
        __mapper_args__ = {"polymorphic_identity": "car", "concrete": True}
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.Text)
        doors = db.Column(db.Integer)
        version = db.Column(db.Integer, default=0)

    db.create_all()
    car = Car(id=1, name="Beetle", doors=2)
    db.session.add(car)
    db.session.commit()
    car.doors = 4
    db.session.commit()

    assert [(snapshot.version, snapshot.doors) for snapshot in car.versions()] == [(0, 2), (1, 4)]
