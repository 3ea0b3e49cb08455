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
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from chrononaut.exceptions import InvalidArgumentError
from chrononaut.history.activity import HIDDEN_COLUMNS_CHANGED_KEY

#: Where :func:`~chrononaut.extra_change_info` keeps the info of the open block.
EXTRA_CHANGE_INFO_KEY = "_chrononaut_extra_change_info"
#: Where :func:`~chrononaut.append_change_info` keeps an object's own info.
APPENDED_CHANGE_INFO_KEY = "chrononaut.appended_change_info"


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
