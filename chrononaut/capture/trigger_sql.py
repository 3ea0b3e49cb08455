"""The SQL of the safety net's triggers, made from a versioned model's columns.

Each netted table gets one PL/pgSQL function, called by five triggers:

- ``chrononaut_net_before_insert`` and ``chrononaut_net_before_update``, row level: an
  INSERT without a version gets 0, an UPDATE that changes a tracked or hidden column
  without changing ``version`` gets ``version + 1``, so that the live row and its
  history agree. Their ``WHEN`` clauses let only those rows call the function.
- ``chrononaut_net_update``, ``AFTER UPDATE``, row level: writes the snapshot of each
  row whose tracked or hidden columns or version changed. Row level, because only the
  row pairs old and new values when the statement changes a primary key.
- ``chrononaut_net_insert`` and ``chrononaut_net_delete``, ``AFTER INSERT`` and
  ``AFTER DELETE``, statement level: write the snapshots of all the statement's rows
  with one INSERT from its transition table, which takes half the time of a call per
  row (see docs/safety-net.rst).
- ``chrononaut_net_truncate``, ``BEFORE TRUNCATE``: a TRUNCATE removes every row
  without firing a DELETE trigger, so the delete of each row is written from the table
  itself, while the rows are still there.

Every trigger skips the statements the session records itself: see
:mod:`chrononaut.capture.triggers`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, types
from sqlalchemy.orm import Mapper

from chrononaut.capture.trigger_values import (
    holds_escape_mark,
    literal,
    may_hold_escape_mark,
    member_expression,
    quote,
    refuse_escape_mark,
)
from chrononaut.history.activity import (
    DELETE,
    HIDDEN_COLUMNS_CHANGED_KEY,
    INSERT,
    UPDATE,
    VERSION_KEY,
    activity_class_for,
)
from chrononaut.history.columns import VersionedColumns

#: The transaction-local settings the session and the triggers share.
SKIP_SETTING = "chrononaut.skip"
CONTEXT_SETTING = "chrononaut.context"
#: What ``user_info["captured_by"]`` holds on rows the triggers wrote.
CAPTURED_BY_KEY = "captured_by"
CAPTURED_BY_DATABASE = "database"
#: The triggers of a netted table.
BEFORE_INSERT_TRIGGER = "chrononaut_net_before_insert"
BEFORE_UPDATE_TRIGGER = "chrononaut_net_before_update"
UPDATE_TRIGGER = "chrononaut_net_update"
INSERT_TRIGGER = "chrononaut_net_insert"
DELETE_TRIGGER = "chrononaut_net_delete"
TRUNCATE_TRIGGER = "chrononaut_net_truncate"
TRIGGERS = (
    BEFORE_INSERT_TRIGGER,
    BEFORE_UPDATE_TRIGGER,
    DELETE_TRIGGER,
    INSERT_TRIGGER,
    TRUNCATE_TRIGGER,
    UPDATE_TRIGGER,
)

#: The transition tables of the statement triggers.
_NEW_ROWS, _OLD_ROWS = "chrononaut_new_rows", "chrononaut_old_rows"
#: Pairs per ``jsonb_build_object`` call, which takes at most 100 arguments.
_PAIRS_PER_CALL = 40
_MAX_IDENTIFIER = 63
_NOT_SKIPPED = f"current_setting('{SKIP_SETTING}', true) IS DISTINCT FROM 'on'"


def qualified(schema: str | None, name: str) -> str:
    """Return the quoted ``name``, qualified by ``schema`` if there is one."""
    return quote(name) if schema is None else f"{quote(schema)}.{quote(name)}"


def function_name(table: Table) -> str:
    """Return the (quoted, schema-qualified) name of the trigger function of ``table``."""
    name = f"chrononaut_net_{table.name}"
    if len(name.encode()) > _MAX_IDENTIFIER:
        # Cut, and made unique again by a digest of the whole name.
        digest = hashlib.sha1(table.name.encode()).hexdigest()[:8]
        name = f"chrononaut_net_{table.name.encode()[:38].decode(errors='ignore')}_{digest}"
    return qualified(table.schema, name)


def install_statements(mapper: Mapper[Any]) -> list[str]:
    """Return the statements that make (or remake) the safety net of ``mapper``'s table.

    :raises ChrononautException: a tracked column's type has no SQL form (see
        :func:`~chrononaut.capture.trigger_values.json_expression`).
    """
    table = _table_of(mapper)
    target = qualified(table.schema, table.name)
    function = function_name(table)
    columns = VersionedColumns.of(mapper)
    new, old = RowSQL(mapper, "NEW"), RowSQL(mapper, "OLD")
    watched = [*columns.tracked, *columns.hidden]
    changes_version = (
        f"NEW.{new.version} IS NOT DISTINCT FROM OLD.{old.version} "
        f"AND {new.tuple(watched)} IS DISTINCT FROM {old.tuple(watched)}"
    )
    changes_snapshot = (
        f"{new.tuple([*watched, VERSION_KEY])} IS DISTINCT FROM "
        f"{old.tuple([*watched, VERSION_KEY])}"
    )
    return [
        _function_sql(mapper, function),
        *_drop_triggers(target),
        f"CREATE TRIGGER {BEFORE_INSERT_TRIGGER} BEFORE INSERT ON {target} "
        f"{_each_row(f'NEW.{new.version} IS NULL')} EXECUTE FUNCTION {function}()",
        f"CREATE TRIGGER {BEFORE_UPDATE_TRIGGER} BEFORE UPDATE ON {target} "
        f"{_each_row(changes_version)} EXECUTE FUNCTION {function}()",
        f"CREATE TRIGGER {UPDATE_TRIGGER} AFTER UPDATE ON {target} "
        f"{_each_row(changes_snapshot)} EXECUTE FUNCTION {function}()",
        f"CREATE TRIGGER {INSERT_TRIGGER} AFTER INSERT ON {target} REFERENCING NEW TABLE "
        f"AS {_NEW_ROWS} FOR EACH STATEMENT WHEN ({_NOT_SKIPPED}) "
        f"EXECUTE FUNCTION {function}()",
        f"CREATE TRIGGER {DELETE_TRIGGER} AFTER DELETE ON {target} REFERENCING OLD TABLE "
        f"AS {_OLD_ROWS} FOR EACH STATEMENT WHEN ({_NOT_SKIPPED}) "
        f"EXECUTE FUNCTION {function}()",
        f"CREATE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {target} "
        f"FOR EACH STATEMENT WHEN ({_NOT_SKIPPED}) EXECUTE FUNCTION {function}()",
    ]


def _each_row(condition: str) -> str:
    # CASE, not AND: only CASE fixes the order, and the session's rows must never
    # evaluate the condition, which may fail (a ``json`` value with ``\u0000`` has no
    # ``jsonb`` form to compare).
    return f"FOR EACH ROW WHEN (CASE WHEN {_NOT_SKIPPED} THEN {condition} ELSE false END)"


def remove_statements(mapper: Mapper[Any]) -> list[str]:
    """Return the statements that drop the safety net of ``mapper``'s table, if any."""
    table = _table_of(mapper)
    target = qualified(table.schema, table.name)
    return [*_drop_triggers(target), f"DROP FUNCTION IF EXISTS {function_name(table)}()"]


def _table_of(mapper: Mapper[Any]) -> Table:
    table = mapper.local_table
    assert isinstance(table, Table)
    return table


def _drop_triggers(target: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name} ON {target}" for name in TRIGGERS]


class RowSQL:
    """The SQL of one versioned table's values in one row (``NEW``, ``OLD``, a row of a
    transition table, or of the rows a recorded statement wrote)."""

    def __init__(self, mapper: Mapper[Any], record: str) -> None:
        self.mapper = mapper
        self.record = record
        self.table_name = _table_of(mapper).name
        self.version = quote(mapper.columns[VERSION_KEY].name)

    def value(self, attribute: str) -> str:
        return f"{self.record}.{quote(self.mapper.columns[attribute].name)}"

    def _where(self, attribute: str) -> str:
        return f"{self.table_name}.{self.mapper.columns[attribute].name}"

    def comparable(self, attribute: str) -> str:
        # ``json`` has no equality operator; its jsonb form compares as Python would.
        value = self.value(attribute)
        is_json = isinstance(self.mapper.columns[attribute].type, types.JSON)
        return f"{value}::jsonb" if is_json else value

    def tuple(self, attributes: Sequence[str]) -> str:
        return f"ROW({', '.join(self.comparable(name) for name in attributes)})"

    def member(self, attribute: str) -> str:
        column = self.mapper.columns[attribute]
        return member_expression(self.value(attribute), column.type, self._where(attribute))

    def object(self, attributes: Sequence[str], version: str | None = None) -> str:
        pairs = [f"{literal(name)}, {self.member(name)}" for name in attributes]
        if version is not None:
            pairs.append(f"'{VERSION_KEY}', {version}")
        calls = [
            f"jsonb_build_object({', '.join(pairs[first : first + _PAIRS_PER_CALL])})"
            for first in range(0, len(pairs), _PAIRS_PER_CALL)
        ]
        return " || ".join(calls)

    def escape_checks(self, attributes: Sequence[str], rows: str | None = None) -> str:
        """PL/pgSQL that refuses values Python would store escaped, for this row or,
        with ``rows``, for any row of that transition table."""
        checks = []
        for name in attributes:
            if not may_hold_escape_mark(self.mapper.columns[name].type):
                continue
            condition = holds_escape_mark(self.value(name))
            if rows is not None:
                condition = f"EXISTS (SELECT FROM {rows} AS {self.record} WHERE {condition})"
            checks.append(f"IF {condition} THEN {refuse_escape_mark(self._where(name))} END IF;")
        return "\n    ".join(checks)


def hidden_changes(hidden: Sequence[str], changed: Callable[[str], str]) -> str:
    """The SQL that adds ``hidden_cols_changed`` to ``extra_info``: the ``hidden``
    attributes whose ``changed`` condition holds, and nothing when none does."""
    if not hidden:
        return ""
    cases = ", ".join(f"CASE WHEN {changed(name)} THEN {literal(name)} END" for name in hidden)
    names = f"nullif(array_remove(ARRAY[{cases}]::text[], NULL), '{{}}')"
    # A NULL list makes a null member, which jsonb_strip_nulls drops: one evaluation.
    return (
        f" || jsonb_strip_nulls(jsonb_build_object('{HIDDEN_COLUMNS_CHANGED_KEY}', "
        f"to_jsonb({names})))"
    )


def _activity_columns(mapper: Mapper[Any]) -> str:
    activity = activity_class_for(mapper.class_).__table__
    return (
        f"INSERT INTO {qualified(activity.schema, activity.name)} (table_name, changed, "
        "version, key, data, user_info, extra_info, operation, transaction_id)"
    )


def _activity_values(
    columns: VersionedColumns, row: RowSQL, data: str, version: str, hidden: str, operation: str
) -> str:
    """The SELECT list of one activity row; ``context`` is the function's variable."""
    return f"""{literal(columns.table_name)}, statement_timestamp(), {version},
        {row.object(columns.primary_key)}, {data},
        coalesce(context -> 'user_info', '{{"user_id": null, "remote_addr": null}}'::jsonb)
            || jsonb_build_object('{CAPTURED_BY_KEY}', '{CAPTURED_BY_DATABASE}',
                                  'database_user', session_user),
        coalesce(context -> 'extra_info', '{{}}'::jsonb){hidden},
        '{operation}', pg_current_xact_id()::text::bigint"""


def _function_sql(mapper: Mapper[Any], function: str) -> str:
    table = _table_of(mapper)
    target = qualified(table.schema, table.name)
    columns = VersionedColumns.of(mapper)
    new, old = RowSQL(mapper, "NEW"), RowSQL(mapper, "OLD")
    inserted, deleted = RowSQL(mapper, "n"), RowSQL(mapper, "o")
    insert_into = _activity_columns(mapper)
    inserted_version = f"n.{inserted.version}"
    deleted_version = f"coalesce(o.{deleted.version}, 0) + 1"
    updated_version = f"NEW.{new.version}"
    inserted_values = _activity_values(
        columns,
        inserted,
        inserted.object(columns.tracked, inserted_version),
        inserted_version,
        hidden_changes(columns.hidden, lambda name: f"{inserted.value(name)} IS NOT NULL"),
        INSERT,
    )
    deleted_values = _activity_values(
        columns,
        deleted,
        deleted.object(columns.tracked, deleted_version),
        deleted_version,
        "",
        DELETE,
    )
    updated_values = _activity_values(
        columns,
        new,
        new.object(columns.tracked, updated_version),
        updated_version,
        hidden_changes(
            columns.hidden,
            lambda name: f"{new.comparable(name)} IS DISTINCT FROM {old.comparable(name)}",
        ),
        UPDATE,
    )
    return f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $chrononaut$
DECLARE
    context jsonb;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        context := nullif(current_setting('{CONTEXT_SETTING}', true), '')::jsonb;
        {deleted.escape_checks(columns.tracked, target)}
        {insert_into}
        SELECT {deleted_values}
        FROM {target} AS o;
        RETURN NULL;
    END IF;
    -- The triggers' WHEN clauses call the BEFORE ones only for rows to change.
    IF TG_WHEN = 'BEFORE' AND TG_OP = 'INSERT' THEN
        NEW.{new.version} := 0;
        RETURN NEW;
    ELSIF TG_WHEN = 'BEFORE' THEN
        NEW.{new.version} := coalesce(OLD.{old.version}, 0) + 1;
        RETURN NEW;
    END IF;
    context := nullif(current_setting('{CONTEXT_SETTING}', true), '')::jsonb;
    IF TG_LEVEL = 'STATEMENT' AND TG_OP = 'INSERT' THEN
        {inserted.escape_checks(columns.tracked, _NEW_ROWS)}
        {insert_into}
        SELECT {inserted_values}
        FROM {_NEW_ROWS} AS n;
    ELSIF TG_LEVEL = 'STATEMENT' THEN
        {deleted.escape_checks(columns.tracked, _OLD_ROWS)}
        {insert_into}
        SELECT {deleted_values}
        FROM {_OLD_ROWS} AS o;
    ELSE
        {new.escape_checks(columns.tracked)}
        {insert_into}
        VALUES ({updated_values});
    END IF;
    RETURN NULL;
END
$chrononaut$
"""
