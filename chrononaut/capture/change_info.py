"""Who made a change and why: the information stored beside each snapshot.

:class:`ChangeInfoMixin` holds the overridable class methods that capture it;
:class:`RecordChanges` stores it on the model's own row. The open
:func:`~chrononaut.acting_as` and :func:`~chrononaut.extra_change_info` blocks are
kept here, as one :class:`ChangeContext` in a context variable: each thread and
each asyncio task sees its own blocks, and blocks of both kinds nest in one order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any
from weakref import WeakSet

from flask import Flask, current_app, has_app_context, has_request_context, request
from sqlalchemy import DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstanceState, Mapped, Session, declared_attr, mapped_column

from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.activity import HIDDEN_COLUMNS_CHANGED_KEY
from chrononaut.history.serialization import serialize_value

logger = logging.getLogger(__name__)

#: Config key: the attribute of Flask-Login's user recorded as ``user_info["user_id"]``.
USER_ID_ATTRIBUTE = "CHRONONAUT_USER_ID_ATTRIBUTE"
DEFAULT_USER_ID_ATTRIBUTE = "email"
#: Where :func:`~chrononaut.append_change_info` keeps an object's own info.
APPENDED_CHANGE_INFO_KEY = "chrononaut.appended_change_info"
#: ``Session.info`` key: ``(transaction, state)`` of the appended info recorded and
#: not committed yet.
_APPENDED_INFO_RECORDED_KEY = "chrononaut.appended_info_recorded"


@dataclass(frozen=True, slots=True)
class ChangeContext:
    """What the open blocks say about the changes flushed in them; the innermost block
    holds the merged view of it and of the blocks around it.

    :meta private:
    """

    #: Recorded as ``user_info["user_id"]`` (see :meth:`ChangeInfoMixin._fetch_current_user_id`).
    actor: str | int | None = None
    #: The actor is recorded even over Flask-Login's authenticated user.
    override_request_user: bool = False
    #: Merged into the ``extra_info`` of each change; read-only.
    extra_info: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: Strict mode is satisfied: an ``extra_change_info`` block, or a block that gives
    #: details (a rationale or others), is open.
    explained: bool = False
    #: The context of the blocks around this one, restored when it closes.
    enclosing: ChangeContext | None = None
    #: What opened the block; only it may close it.
    opened_by: object = None


#: The context of every thread and task without open blocks. Frozen, with a read-only
#: ``extra_info``, so it can be shared.
_NO_BLOCKS = ChangeContext()
_CHANGE_CONTEXT: ContextVar[ChangeContext] = ContextVar(
    "chrononaut_change_context", default=_NO_BLOCKS
)


def current_blocks() -> ChangeContext:
    """Return the context of the open blocks (an empty one when none is open)."""
    return _CHANGE_CONTEXT.get()


def open_block(
    opened_by: object,
    *,
    actor: str | int | None = None,
    override_request_user: bool = False,
    extra_info: Mapping[str, Any],
    explains: bool,
) -> None:
    """Open a block inside the current ones: its ``extra_info`` adds to theirs (and
    overrides theirs for the same keys); its actor, if it names one, replaces theirs.

    :param opened_by: the object that will close the block with :func:`close_block`.
    :param explains: whether the block satisfies strict mode by itself.
    """
    outer = _CHANGE_CONTEXT.get()
    if actor is None:
        actor, override_request_user = outer.actor, outer.override_request_user
    _CHANGE_CONTEXT.set(
        ChangeContext(
            actor=actor,
            override_request_user=override_request_user,
            extra_info=MappingProxyType({**outer.extra_info, **extra_info}),
            explained=outer.explained or explains,
            enclosing=outer,
            opened_by=opened_by,
        )
    )


def close_block(opened_by: object) -> None:
    """Close the innermost block, which ``opened_by`` must have opened.

    Each block restores the context it was opened in, so that a block shared by
    several threads or tasks (a decorator, a module-level block) closes its own entry
    in each of them.

    :raises ChrononautException: the innermost block was opened by something else,
        which happens when blocks are entered and left out of order.
    """
    current = _CHANGE_CONTEXT.get()
    if current.enclosing is None or current.opened_by is not opened_by:
        raise ChrononautException(
            "Change-info blocks must be left in the reverse order they were entered, "
            "and only once: enter and leave them with `with` statements."
        )
    _CHANGE_CONTEXT.set(current.enclosing)


class ChangeInfoMixin:
    """Class methods that capture the context of a change.

    Override them on a model to record something else; each is called once per model
    class and flush.
    """

    @classmethod
    def _capture_user_info(cls) -> dict[str, Any]:
        """Return the ``user_info`` stored with each change."""
        return {"user_id": cls._fetch_current_user_id(), "remote_addr": cls._fetch_remote_addr()}

    @classmethod
    def _fetch_current_user_id(cls) -> Any:
        """Return who makes the change.

        That is Flask-Login's authenticated user, identified by the attribute that
        ``CHRONONAUT_USER_ID_ATTRIBUTE`` names (``email`` by default); without one, the
        actor of the open :func:`~chrononaut.acting_as` block; else ``None``. A block
        opened with ``override_request_user=True`` wins over the authenticated user.
        """
        blocks = _CHANGE_CONTEXT.get()
        if blocks.override_request_user:
            return blocks.actor
        user = _authenticated_user()
        if user is None:
            return blocks.actor
        return _user_id_of(user)

    @classmethod
    def _fetch_remote_addr(cls) -> str | None:
        """Return the remote address of the current request, else ``None``."""
        return request.remote_addr if has_request_context() else None

    @classmethod
    def _get_custom_change_info(cls) -> dict[str, Any]:
        """Return what ``CHRONONAUT_EXTRA_CHANGE_INFO_FUNC`` gives, if it is configured."""
        if not has_app_context():
            return {}
        change_info_func = current_app.config.get("CHRONONAUT_EXTRA_CHANGE_INFO_FUNC")
        return dict(change_info_func() or {}) if change_info_func else {}


def _authenticated_user() -> Any:
    """Return Flask-Login's current user if it is authenticated, else ``None``."""
    if not has_app_context() or not hasattr(current_app, "login_manager"):
        return None
    try:
        from flask_login import current_user
    except ImportError:
        return None
    # Outside a request Flask-Login's proxy wraps None, which has no is_authenticated.
    if not getattr(current_user, "is_authenticated", False):
        return None
    return current_user._get_current_object()


#: Applications already told that their users lack the configured attribute.
_warned_apps: WeakSet[Flask] = WeakSet()


def _user_id_of(user: Any) -> Any:
    """Return the configured identifying attribute of ``user``, as JSON can hold it.

    :raises InvalidArgumentError: ``CHRONONAUT_USER_ID_ATTRIBUTE`` is not the name of
        an attribute.
    """
    attribute = current_app.config.get(USER_ID_ATTRIBUTE, DEFAULT_USER_ID_ATTRIBUTE)
    if not isinstance(attribute, str) or not attribute.isidentifier():
        raise InvalidArgumentError(
            f"{USER_ID_ATTRIBUTE} must name an attribute of the Flask-Login user "
            f"(such as 'email' or 'id'), not {attribute!r}."
        )
    missing = object()
    user_id = getattr(user, attribute, missing)
    if user_id is missing:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        if app not in _warned_apps:
            _warned_apps.add(app)
            logger.warning(
                "The logged-in %s has no attribute %r, so changes are recorded with "
                "user_id None. Set %s to the attribute that identifies your users. "
                "(Logged once per application.)",
                type(user).__name__,
                attribute,
                USER_ID_ATTRIBUTE,
            )
        return None
    # An id JSON cannot hold, such as a UUID, is stored as a snapshot stores it: as text.
    return serialize_value(user_id)


def refuse_reserved_keys(change_info: Mapping[str, Any]) -> None:
    """Refuse change info that would take the place of what Chrononaut records itself.

    :raises InvalidArgumentError: ``change_info`` has a ``hidden_cols_changed`` key.
    """
    if HIDDEN_COLUMNS_CHANGED_KEY in change_info:
        raise InvalidArgumentError(
            f"`{HIDDEN_COLUMNS_CHANGED_KEY}` is recorded by Chrononaut itself: it lists "
            "the hidden columns a change touched. Give your change info another key."
        )


def active_extra_change_info() -> dict[str, Any] | None:
    """Return the extra info of the open blocks, or ``None`` when none of them gives a
    reason for the change (strict mode refuses the change then)."""
    blocks = _CHANGE_CONTEXT.get()
    return dict(blocks.extra_info) if blocks.explained else None


def note_appended_info_recorded(session: Session, states: list[InstanceState[Any]]) -> None:
    """Note that the appended info of ``states`` is recorded in the innermost open
    transaction, to be dropped when the outermost one commits."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_APPENDED_INFO_RECORDED_KEY, []).extend(
        (transaction, state) for state in states
    )


def forget_recorded_appended_info(session: Session) -> None:
    """``after_commit``: drop the appended info the committed transaction recorded."""
    if session.get_nested_transaction() is not None:
        return  # a savepoint was released; the transaction around it may still roll back
    for _, state in session.info.pop(_APPENDED_INFO_RECORDED_KEY, ()):
        state.info.pop(APPENDED_CHANGE_INFO_KEY, None)


def keep_appended_info_rolled_back(session: Session, previous_transaction: Any) -> None:
    """``after_soft_rollback``: appended info recorded in the transaction rolled back,
    or in one inside it, is no longer recorded; it stays on its objects, so that a
    retried commit records it."""
    recorded = session.info.get(_APPENDED_INFO_RECORDED_KEY)
    if recorded:
        session.info[_APPENDED_INFO_RECORDED_KEY] = [
            (transaction, state)
            for transaction, state in recorded
            if not transaction_within(transaction, previous_transaction)
        ]


def transaction_within(transaction: Any, outer: Any) -> bool:
    """Tell whether the session transaction ``transaction`` is ``outer`` or nested in it."""
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


class RecordChanges(ChangeInfoMixin):
    """Mixin that stamps each insert and update on the row itself.

    ``change_info`` gets the ``user_info`` of the change plus an ``"extra"`` key with
    the extra change info when there is any; ``changed`` gets the time of the flush.
    """

    @declared_attr
    def change_info(cls) -> Mapped[dict[str, Any] | None]:
        return mapped_column(JSONB, nullable=True)

    @declared_attr
    def changed(cls) -> Mapped[datetime | None]:
        return mapped_column(DateTime(timezone=True), nullable=True)
