"""Who made a change and why: the information stored beside each snapshot.

:class:`ChangeInfoMixin` holds the overridable class methods that capture it;
:class:`RecordChanges` stores it on the model's own row.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import current_app, g, has_app_context, has_request_context, request
from sqlalchemy import DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstanceState, Mapped, Session, declared_attr, mapped_column

from chrononaut.exceptions import InvalidArgumentError
from chrononaut.history.activity import HIDDEN_COLUMNS_CHANGED_KEY

#: Where :func:`~chrononaut.extra_change_info` keeps the info of the open block.
EXTRA_CHANGE_INFO_KEY = "_chrononaut_extra_change_info"
#: Where :func:`~chrononaut.append_change_info` keeps an object's own info.
APPENDED_CHANGE_INFO_KEY = "chrononaut.appended_change_info"
#: ``Session.info`` key: ``(transaction, state)`` of the appended info recorded and
#: not committed yet.
_APPENDED_INFO_RECORDED_KEY = "chrononaut.appended_info_recorded"


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
        """Return the email of Flask-Login's authenticated user, else ``None``."""
        if not has_app_context() or not hasattr(current_app, "login_manager"):
            return None
        try:
            from flask_login import current_user
        except ImportError:
            return None
        # Outside a request Flask-Login's proxy wraps None, which has no is_authenticated.
        if not getattr(current_user, "is_authenticated", False):
            return None
        return getattr(current_user, "email", None)

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
    """Return the info of the innermost open ``extra_change_info`` block, or ``None``."""
    if not has_app_context():
        return None
    info: dict[str, Any] | None = g.get(EXTRA_CHANGE_INFO_KEY)
    return info


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
            if not _within(transaction, previous_transaction)
        ]


def _within(transaction: Any, outer: Any) -> bool:
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
