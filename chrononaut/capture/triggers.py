"""The safety net: database triggers that record the writes the session never sees.

The session records what it flushes. SQL text, another service, ``psql`` or a data
migration write the versioned tables without it; with the safety net installed on a
model's table, PostgreSQL triggers record those writes into the same activity table,
in the same snapshot format (see :mod:`chrononaut.capture.trigger_values`).

Each change is recorded once. The session sets the transaction-local setting
``chrononaut.skip`` to ``on`` around the statements it records itself (each flush,
and the statements it runs inside :func:`~chrononaut.unsafe.suppress_versioning`),
and the triggers' ``WHEN`` clause skips those rows before any trigger code runs. With
``CHRONONAUT_SAFETY_NET`` off, the session sends nothing at all. Before SQL text it
runs, the session sends who acts and why as the setting ``chrononaut.context``.

The SQL of the triggers is made in :mod:`chrononaut.capture.trigger_sql`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import chain
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import Table, TextClause, bindparam, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, UOWTransaction

from chrononaut.capture.change_info import ChangeInfoMixin, current_blocks
from chrononaut.capture.guard import versioning_suppressed
from chrononaut.capture.session import VersionedSession
from chrononaut.capture.trigger_sql import (
    CONTEXT_SETTING,
    SKIP_SETTING,
    install_statements,
    remove_statements,
)
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.activity import (
    TIME_TRAVEL_COLUMNS,
    TIME_TRAVEL_MIGRATION,
    activity_class_for,
)

#: Config key: the application's sessions mark their own writes for the triggers.
SAFETY_NET_CONFIG = "CHRONONAUT_SAFETY_NET"
_SET_SKIP = text(f"SELECT set_config('{SKIP_SETTING}', :skip, true)")
_SET_CONTEXT = text(
    f"SELECT set_config('{SKIP_SETTING}', :skip, true), "
    f"set_config('{CONTEXT_SETTING}', :context, true)"
)
#: ``session.info`` key: the connections a running flush marked.
_MARKED_KEY = "chrononaut.net_marked"


def safety_net_on() -> bool:
    """Tell whether the current application's sessions mark their writes for the net."""
    return has_app_context() and bool(current_app.config.get(SAFETY_NET_CONFIG))


def change_context_json() -> str:
    """Return who acts and why, as the session would record it, as JSON for the
    triggers: ``{"user_info": ..., "extra_info": ...}``."""
    extra_info = {**ChangeInfoMixin._get_custom_change_info(), **current_blocks().extra_info}
    context = {"user_info": ChangeInfoMixin._capture_user_info(), "extra_info": extra_info}
    return json.dumps(context, default=str)


def send_change_context(connection: Connection) -> None:
    """Tell the triggers who acts and why for the rest of ``connection``'s transaction.

    The session does this itself before SQL text; call it for writes on a connection
    of your own (``db.engine.connect()``) inside :func:`~chrononaut.acting_as` or
    :func:`~chrononaut.extra_change_info` blocks.

    :param connection: a connection inside the transaction that will write.
    """
    connection.execute(_SET_CONTEXT, {"skip": "", "context": change_context_json()})


# -- the session's side ------------------------------------------------------------


def _mark_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    """``before_flush``: the flush's rows are recorded by the session; the triggers skip
    them until ``after_flush``."""
    if not safety_net_on():
        return
    # Every object's bind, not only the versioned objects': a flush may discover
    # versioned rows to write, orphans deleted by a cascade from another model.
    mappers = {inspect(type(obj)) for obj in chain(session.new, session.dirty, session.deleted)}
    marked: list[Connection] = []
    for mapper in mappers:
        connection = session.connection(bind_arguments={"mapper": mapper})
        if connection not in marked:
            connection.execute(_SET_SKIP, {"skip": "on"})
            marked.append(connection)
    session.info[_MARKED_KEY] = marked


def _unmark_flush(session: Session, flush_context: UOWTransaction) -> None:
    """``after_flush``: writes after the flush are the triggers' again."""
    for connection in session.info.pop(_MARKED_KEY, ()):
        connection.execute(_SET_SKIP, {"skip": ""})


def _forget_marks(session: Session) -> None:
    session.info.pop(_MARKED_KEY, None)


def _mark_statement(execute_state: ORMExecuteState) -> Any:
    """``do_orm_execute``: send the change context before SQL text, and have the
    triggers skip the statements the session records or suppresses itself."""
    if not safety_net_on() or (execute_state.is_select and not _is_text(execute_state)):
        return None
    skip = versioning_suppressed() or not _is_text(execute_state)
    connection = execute_state.session.connection(bind_arguments=execute_state.bind_arguments)
    connection.execute(
        _SET_CONTEXT, {"skip": "on" if skip else "", "context": change_context_json()}
    )
    if not skip:
        return None
    try:
        return execute_state.invoke_statement()
    finally:
        connection.execute(_SET_SKIP, {"skip": ""})


def _is_text(execute_state: ORMExecuteState) -> bool:
    return isinstance(execute_state.statement, TextClause)


_SESSION_LISTENERS = (
    ("before_flush", _mark_flush),
    ("after_flush", _unmark_flush),
    ("after_rollback", _forget_marks),
    ("do_orm_execute", _mark_statement),
)


def listen() -> None:
    """Register the session listeners of the safety net; safe to call more than once."""
    if not event.contains(VersionedSession, "before_flush", _mark_flush):
        for name, listener in _SESSION_LISTENERS:
            event.listen(VersionedSession, name, listener)


# -- the database's side -----------------------------------------------------------


def install_safety_net(connection: Connection, models: Iterable[type[Any]]) -> None:
    """Make (or remake) the triggers of each of ``models``' tables.

    Run it again after a model's columns or its hidden or untracked declarations
    change: the triggers know the columns as they were declared when they were made.

    :param connection: a connection in the transaction that installs them, such as
        Alembic's ``op.get_bind()``.
    :param models: versioned models, each with a table of its own.
    :raises InvalidArgumentError: a model is not versioned.
    :raises ChrononautException: a model is part of an inheritance hierarchy, or has a
        tracked column of a type the triggers cannot record as the session does; the
        activity table lacks the ``operation`` and ``transaction_id`` columns; or the
        current application has ``CHRONONAUT_SAFETY_NET`` off, so that its sessions
        would have their changes recorded twice.
    """
    if has_app_context() and not safety_net_on():
        raise ChrononautException(
            f"Set {SAFETY_NET_CONFIG} = True in every process of the application before "
            "installing the safety net: without it the session does not mark its own "
            "writes, and the triggers would record each of them a second time."
        )
    # Every model is checked before anything is made.
    statements = [(mapper, install_statements(mapper)) for mapper in map(_netted_mapper, models)]
    for mapper, mapper_statements in statements:
        _require_time_travel_columns(connection, activity_class_for(mapper.class_).__table__)
        _run(connection, mapper_statements)


def remove_safety_net(connection: Connection, models: Iterable[type[Any]]) -> None:
    """Drop the triggers of each of ``models``' tables, if they are there.

    :raises InvalidArgumentError: a model is not versioned.
    """
    for model in models:
        mapper = _mapper_of(model)
        _run(connection, remove_statements(mapper))


def _run(connection: Connection, statements: list[str]) -> None:
    for statement in statements:
        # As written: no driver may read the SQL for parameters.
        connection.exec_driver_sql(statement, execution_options={"no_parameters": True})


def _mapper_of(model: Any) -> Mapper[Any]:
    if not (isinstance(model, type) and issubclass(model, Versioned)):
        raise InvalidArgumentError(f"The safety net is made for Versioned models, not {model!r}.")
    mapper: Mapper[Any] = inspect(model)
    return mapper


def _netted_mapper(model: Any) -> Mapper[Any]:
    mapper = _mapper_of(model)
    if (
        mapper.inherits is not None
        or mapper.polymorphic_on is not None
        or len(list(mapper.self_and_descendants)) > 1
    ):
        raise ChrononautException(
            f"{mapper.class_.__name__} is part of an inheritance hierarchy, whose "
            "snapshots hold the columns of several tables: the safety net cannot record "
            "it. Leave it out."
        )
    if not isinstance(mapper.local_table, Table):
        raise ChrononautException(f"{mapper.class_.__name__} is not mapped to a table.")
    return mapper


def _require_time_travel_columns(connection: Connection, table: Table) -> None:
    found = connection.execute(
        text(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = "
            "coalesce(CAST(:schema AS text), current_schema()) AND table_name = "
            "CAST(:name AS text) AND column_name IN :columns"
        ).bindparams(bindparam("columns", expanding=True)),
        {"schema": table.schema, "name": table.name, "columns": list(TIME_TRAVEL_COLUMNS)},
    ).scalar_one()
    if found != len(TIME_TRAVEL_COLUMNS):
        raise ChrononautException(
            f"{table.name} has no {' or '.join(TIME_TRAVEL_COLUMNS)} column (or does not "
            "exist yet): the safety net writes both. Create the tables, or add the columns "
            f"with the migration in {TIME_TRAVEL_MIGRATION}, first."
        )
