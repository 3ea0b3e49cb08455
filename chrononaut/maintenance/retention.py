"""Retention: how long each model's history is kept, and the pruning that applies it.

A model declares its rule as ``__chrononaut_retention__ = Retention(...)`` (see
:mod:`chrononaut.history.retention`); without one, everything is kept. :func:`prune`
deletes what the rules let go, in short transactions of one batch each, and records
that it ran as a row of the activity table (:data:`PRUNE_TABLE_NAME`). In the
partitioned layout, a past partition all of whose rows the rules let go is detached
and dropped whole instead. It never
removes the row that holds an object's state at the cutoff, so that dated reads stay
exact from then on.
``docs/retention.rst`` tells the whole story.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    column,
    delete,
    exists,
    false,
    func,
    insert,
    inspect,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy import (
    table as table_clause,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Mapper, Session

from chrononaut.capture.change_info import active_extra_change_info
from chrononaut.capture.guard import suppress_versioning
from chrononaut.capture.session import read_history_on_primary
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import InvalidArgumentError
from chrononaut.history.activity import (
    INSERT,
    VERSION_KEY,
    activity_class_for,
    require_time_travel_columns,
)
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.lives import deleted_condition, row_before
from chrononaut.history.partitions import partition_interval, quoted
from chrononaut.history.retention import Retention, retention_of
from chrononaut.history.serialization import UTC

#: The ``table_name`` of the rows that record each prune. Their ``key`` is
#: ``{"run": <start time, ISO 8601>}``, their ``data`` holds, under ``models``, for
#: each model pruned its ``table_name``, ``rule``, ``cutoff`` and the ``rows``
#: removed, and under ``partitions`` (when there were any) the names of the
#: partitions dropped, whose rows are counted in ``rows``. No versioned model has
#: this table name, so no read of a model's history and no prune ever reaches them.
PRUNE_TABLE_NAME = "chrononaut_prune"

# Taken by each batch of a prune and by each erasure, for its transaction: two of them
# never lock the same activity rows in different orders. Ordinary writes only insert
# activity rows and never wait for it.
_MAINTENANCE_LOCK = 0x6368726F6E6F  # "chrono"


def take_maintenance_lock(session: Session) -> None:
    """Wait for the other prunes and erasures to end their transactions; the lock is
    held until this session's transaction ends."""
    session.execute(select(func.pg_advisory_xact_lock(_MAINTENANCE_LOCK)))


@dataclass
class PrunedModel:
    """What :func:`prune` did, or would do, to one model's history.

    :ivar model: the model whose rule applied.
    :ivar retention: the rule.
    :ivar cutoff: for a ``days`` rule, the time before which rows were let go; dated
        reads of every object stay exact at and after it.
    :ivar rows: the rows removed (or, in a dry run, that would be).
    """

    model: type[Versioned]
    retention: Retention
    cutoff: datetime | None
    rows: int = 0

    def as_json(self) -> dict[str, Any]:
        """The entry of this model in the prune record."""
        return {
            "table_name": VersionedColumns.of(inspect(self.model)).table_name,
            "rule": self.retention.as_json(),
            "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
            "rows": self.rows,
        }


@dataclass
class PruneReport:
    """What :func:`prune` did.

    :ivar started: when the prune started; ``days`` rules count back from it.
    :ivar dry_run: nothing was removed; the numbers say what would have been.
    :ivar models: one entry per model with a rule, sorted by model name.
    :ivar partitions: in the partitioned layout, the partitions dropped whole (or, in
        a dry run, that would be), oldest first; their rows count in ``models``.
    """

    started: datetime
    dry_run: bool
    models: list[PrunedModel] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """The rows removed in all."""
        return sum(entry.rows for entry in self.models)


#: Called after each batch with the model's entry and the rows the batch removed.
ProgressCallback = Callable[[PrunedModel, int], None]


def prune(
    db: Any,
    dry_run: bool = False,
    *,
    batch_size: int = 1000,
    progress: ProgressCallback | None = None,
) -> PruneReport:
    """Remove the history rows the models' :class:`Retention` rules let go.

    Each batch of at most ``batch_size`` rows is deleted and committed in a
    transaction of its own, on a session of its own, so that no lock is held for long
    and the application's session is not touched. Only rows already there when it
    reaches a model are considered; changes recorded meanwhile are never removed by
    it. Rows of models without a rule are not touched. When done, a row of
    :data:`PRUNE_TABLE_NAME` records who ran it (as changes record it: the
    Flask-Login user or the :func:`~chrononaut.acting_as` actor), when, and each
    model's rule, cutoff and rows removed. A prune interrupted midway records nothing;
    run it again.

    In the partitioned layout (``CHRONONAUT_ACTIVITY_PARTITIONS``), each partition
    wholly in the past whose every row some model's rule lets go is detached and
    dropped first, in a transaction of its own, which is much cheaper than deleting
    its rows; the others are pruned row by row. Rows of models without a rule, and
    the records of prunes and erasures, keep their partition.

    :param db: the :class:`~chrononaut.VersionedSQLAlchemy` instance.
    :param dry_run: count what would be removed, remove and record nothing.
    :param batch_size: rows deleted per transaction.
    :param progress: called after each batch (see :data:`ProgressCallback`).
    :return: what was (or would be) removed, per model.
    :raises ChrononautException: the activity table lacks the ``operation`` column
        (see ``docs/migration.rst``).
    :raises InvalidArgumentError: ``batch_size`` is not a positive integer.
    """
    if type(batch_size) is not int or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, not {batch_size!r}.")
    report = PruneReport(started=datetime.now(UTC), dry_run=dry_run)
    # A session of its own, so that nothing of the application's is flushed by it.
    session: Session = db.session.session_factory()
    # It reads the rows it removes: on the primary, where it removes them.
    read_history_on_primary(session)
    try:
        report.models = [
            PrunedModel(model, retention, _cutoff(retention, report.started))
            for model, retention in _models_with_rules(db)
        ]
        table = db.activity_cls.__table__
        if report.models and partition_interval(table) is not None:
            _drop_expired_partitions(session, table, report, progress)
        for entry in report.models:
            _prune_model(session, entry, dry_run, batch_size, progress)
        if not dry_run:
            _record(session, db.activity_cls.__table__, report)
            session.commit()
    finally:
        session.close()
    return report


#: The partitions of the activity table, each with the end of its range; ``None`` for
#: the default partition and a range open at the end.
_PARTITION_ENDS = text(
    "SELECT c.relname AS name, (regexp_match(pg_get_expr(c.relpartbound, c.oid), "
    "'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS ends "
    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = to_regclass(:table)"
)


#: How long dropping a partition waits for the transactions that read the table.
_DETACH_LOCK_TIMEOUT = "2s"
_LOCK_NOT_AVAILABLE = "55P03"


def _drop_expired_partitions(
    session: Session, table: Table, report: PruneReport, progress: ProgressCallback | None
) -> None:
    """Detach and drop each partition that ended before the prune started and holds
    rows, every one of which the rule of its model lets go (in a dry run, only name
    them: the batches count their rows)."""
    require_time_travel_columns(session, table)
    partitions = session.execute(_PARTITION_ENDS, {"table": quoted(table, table.name)}).all()
    session.commit()
    ended = sorted(
        (ends, name) for name, ends in partitions if ends is not None and ends <= report.started
    )
    for _, name in ended:
        partition = table_clause(
            name, *(column(c.name, c.type) for c in table.columns), schema=table.schema
        )
        rows = partition.alias("r")
        removable = or_(
            false(),
            *(
                and_(
                    rows.c.table_name == VersionedColumns.of(inspect(entry.model)).table_name,
                    _removable(rows, table, entry, inspect(entry.model)),
                )
                for entry in report.models
            ),
        )
        if not report.dry_run:
            take_maintenance_lock(session)
            # No row can be added to it while it is judged.
            session.execute(text(f"LOCK TABLE {quoted(table, name)} IN SHARE MODE"))
        kept = exists().where(not_(func.coalesce(removable, False))).select_from(rows)
        counts: dict[str, int] = (
            {}
            if session.scalar(select(kept))
            else dict(
                session.execute(
                    select(rows.c.table_name, func.count()).group_by(rows.c.table_name)
                ).all()
            )
        )
        if not counts:
            session.commit()
            continue
        report.partitions.append(name)
        if report.dry_run:
            session.commit()
            continue
        if not _detach_and_drop(session, table, name):
            report.partitions.remove(name)  # its rows are deleted batch by batch
            continue
        for entry in report.models:
            removed = counts.get(VersionedColumns.of(inspect(entry.model)).table_name, 0)
            entry.rows += removed
            if removed and progress is not None:
                progress(entry, removed)


def _detach_and_drop(session: Session, table: Table, name: str) -> bool:
    """Detach and drop the partition ``name`` and commit; tell whether it was done.

    Detaching locks the whole table out, so it waits for every transaction that read
    it, and writes queue behind it: it gives up after :data:`_DETACH_LOCK_TIMEOUT`
    (a long transaction is open), and the partition's rows are pruned row by row.
    """
    session.execute(text(f"SET LOCAL lock_timeout = '{_DETACH_LOCK_TIMEOUT}'"))
    try:
        session.execute(
            text(f"ALTER TABLE {quoted(table, table.name)} DETACH PARTITION {quoted(table, name)}")
        )
    except OperationalError as error:
        session.rollback()
        if _sqlstate(error) != _LOCK_NOT_AVAILABLE:
            raise
        return False
    session.execute(text(f"DROP TABLE {quoted(table, name)}"))
    session.commit()
    return True


def _sqlstate(error: DBAPIError) -> str | None:
    """The SQLSTATE of a driver's error, under psycopg's name or psycopg2's."""
    code: str | None = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code


def _cutoff(retention: Retention, started: datetime) -> datetime | None:
    return None if retention.days is None else started - timedelta(days=retention.days)


def _models_with_rules(db: Any) -> list[tuple[type[Versioned], Retention]]:
    """The versioned models with a rule, one per history table name, by class name."""
    by_table: dict[str, tuple[type[Versioned], Retention]] = {}
    models = sorted(
        (mapper.class_ for mapper in db.Model.registry.mappers),
        key=lambda model: model.__name__,
    )
    for model in models:
        retention = retention_of(model)
        if issubclass(model, Versioned) and retention is not None:
            table_name = VersionedColumns.of(inspect(model)).table_name
            by_table.setdefault(table_name, (model, retention))
    return list(by_table.values())


def _prune_model(
    session: Session,
    entry: PrunedModel,
    dry_run: bool,
    batch_size: int,
    progress: ProgressCallback | None,
) -> None:
    table = activity_class_for(entry.model).__table__
    require_time_travel_columns(session, table)
    first, following = _batch_statements(table, entry, dry_run)
    # Only rows that were there when the model's turn came: a steady stream of new
    # versions keeps making older rows removable, and must not keep the prune going.
    newest_id = session.scalar(select(func.max(table.c.id)))
    session.commit()
    parameters: dict[str, Any] = {"batch_size": batch_size, "newest_id": newest_id or 0}
    statement = first
    while True:
        # The one sanctioned way to delete history rows, open for one batch at a time:
        # the progress callback, which may be the application's code, runs outside it.
        with suppress_versioning(allow_deleting_history=True):
            if not dry_run:
                take_maintenance_lock(session)
            last = session.execute(statement, parameters).one_or_none()
            session.commit()
        if last is None:
            return
        entry.rows += last.removed
        if progress is not None:
            progress(entry, last.removed)
        if last.selected < batch_size:
            return
        # The next batch starts after this one, in the index's order.
        parameters.update(after_key=last.key, after_changed=last.changed, after_id=last.id)
        statement = following


def _batch_statements(table: Table, entry: PrunedModel, dry_run: bool) -> tuple[Any, Any]:
    """The statements that remove one batch: the first, and those after a batch.

    Each returns one row (none once nothing is left): the position of the batch's
    last row in the index order (``key``, ``changed``, ``id``), the rows it selected
    and the rows it removed.
    """
    rows = table.alias("r")
    mapper = inspect(entry.model)
    table_name = VersionedColumns.of(mapper).table_name
    candidates = (
        select(rows.c.id, rows.c.key, rows.c.changed)
        .where(
            rows.c.table_name == table_name,
            rows.c.id <= bindparam("newest_id", type_=BigInteger),
            _removable(rows, table, entry, mapper),
        )
        .order_by(rows.c.key, rows.c.changed, rows.c.id)
        .limit(bindparam("batch_size"))
    )
    after = tuple_(rows.c.key, rows.c.changed, rows.c.id) > tuple_(
        bindparam("after_key", type_=JSONB),
        bindparam("after_changed", type_=rows.c.changed.type),
        bindparam("after_id", type_=BigInteger),
    )
    return (
        _batch_statement(table, candidates, dry_run),
        _batch_statement(table, candidates.where(after), dry_run),
    )


def _batch_statement(table: Table, candidates: Any, dry_run: bool) -> Any:
    batch = candidates.cte("batch")
    if dry_run:
        removed: Any = select(func.count()).select_from(batch).scalar_subquery()
    else:
        gone = (
            delete(table)
            .where(table.c.id.in_(select(batch.c.id)))
            .returning(table.c.id)
            .cte("gone")
        )
        removed = select(func.count()).select_from(gone).scalar_subquery()
    return (
        select(
            batch.c.key,
            batch.c.changed,
            batch.c.id,
            select(func.count()).select_from(batch).scalar_subquery().label("selected"),
            removed.label("removed"),
        )
        .order_by(batch.c.key.desc(), batch.c.changed.desc(), batch.c.id.desc())
        .limit(1)
    )


def _removable(
    rows: Any, table: Table, entry: PrunedModel, mapper: Mapper[Any]
) -> ColumnElement[bool]:
    """The condition that no rule of ``entry`` keeps the row of ``rows``."""
    retention = entry.retention
    later = table.alias("later")
    same_object_later = and_(
        later.c.table_name == rows.c.table_name,
        later.c.key == rows.c.key,
        tuple_(later.c.changed, later.c.id) > tuple_(rows.c.changed, rows.c.id),
    )
    conditions: list[ColumnElement[bool]] = []
    if entry.cutoff is not None:
        # Not the newest row at or before the cutoff: a later one is too.
        conditions.append(rows.c.changed <= entry.cutoff)
        conditions.append(
            exists().where(same_object_later, later.c.changed <= entry.cutoff).select_from(later)
        )
    if retention.versions is not None:
        # At least `versions` rows follow it.
        conditions.append(
            exists(
                select(literal_column("1"))
                .select_from(later)
                .where(same_object_later)
                .order_by(later.c.changed, later.c.id)
                .offset(retention.versions - 1)
                .limit(1)
            )
        )
    if retention.keep_deletes:
        conditions.append(not_(deleted_condition(rows, table, mapper)))
        conditions.append(not_(_starts_life_after_unrecorded_delete(rows, table)))
    return and_(true(), *conditions)


def _starts_life_after_unrecorded_delete(rows: Any, table: Table) -> ColumnElement[bool]:
    """The row is a version 0 that follows a row without an operation.

    Such a row is what tells that the row before it was a delete
    (:mod:`chrononaut.history.lives`): it stays with the delete it tells of.
    """
    before = table.alias("before")
    previous_unrecorded = row_before(
        select(before.c.operation.is_(None)), before, rows
    ).scalar_subquery()
    return and_(rows.c.version == 0, func.coalesce(previous_unrecorded, False))


def _record(session: Session, table: Table, report: PruneReport) -> None:
    """Write the row that records the prune."""
    session.execute(
        insert(table).values(
            table_name=PRUNE_TABLE_NAME,
            changed=datetime.now(UTC),
            version=0,
            key={"run": report.started.isoformat()},
            data={
                "models": {entry.model.__name__: entry.as_json() for entry in report.models},
                **({"partitions": report.partitions} if report.partitions else {}),
                VERSION_KEY: 0,
            },
            user_info=Versioned._capture_user_info(),
            extra_info=active_extra_change_info() or {},
            operation=INSERT,
            transaction_id=cast(cast(func.pg_current_xact_id(), Text), BigInteger),
        )
    )
