"""The assumptions ``chrononaut._compat`` makes about SQLAlchemy and Flask-SQLAlchemy
internals, checked directly, so that an upgrade that breaks one fails here by name."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event, inspect

from chrononaut import VersionedSession
from chrononaut._compat import (
    attribute_history,
    changed_since_load,
    instance_state,
    new_instance,
)


def test_instance_state_is_what_inspect_returns(session, models):
    todo = models.Todo(title="state")
    assert instance_state(todo) is inspect(todo)


def test_changed_since_load_names_exactly_the_attributes_set(session, models):
    todo = models.Todo(title="loaded", text="body")
    session.add(todo)
    session.commit()
    todo = session.get(models.Todo, todo.id)
    assert not changed_since_load(inspect(todo))

    todo.title = "set"
    assert set(changed_since_load(inspect(todo))) == {"title"}
    session.commit()
    assert not changed_since_load(inspect(todo))


def test_attribute_history_never_loads(db, session, models):
    todo = models.Todo(title="expired")
    session.add(todo)
    session.commit()  # expires every attribute
    statements = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    history = attribute_history(inspect(todo), "title")

    assert statements == []
    assert not history.has_changes()
    todo.title = "changed"
    assert attribute_history(inspect(todo), "title").added == ["changed"]


def test_new_instance_skips_the_constructor(db):
    class Strict(db.Model):
        __tablename__ = "strict"
        id = db.Column(db.Integer, primary_key=True)

        def __init__(self, required):
            raise AssertionError("the constructor must not run")

    instance = new_instance(inspect(Strict))
    assert type(instance) is Strict
    assert inspect(instance).transient


def test_flask_sqlalchemy_still_makes_every_session_factory_in_one_method(db):
    # VersionedSQLAlchemy makes its sessions versioned by hooking this method.
    assert callable(SQLAlchemy._make_session_factory)
    factory = db._make_session_factory({})
    assert issubclass(factory.class_, VersionedSession)
