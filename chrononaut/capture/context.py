"""Context managers that attach a reason or other details to the changes made in them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from flask import has_app_context
from sqlalchemy import inspect

from chrononaut.capture.change_info import (
    APPENDED_CHANGE_INFO_KEY,
    close_block,
    open_block,
    refuse_reserved_keys,
)
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException, InvalidArgumentError


@contextmanager
def extra_change_info(**change_info: Any) -> Iterator[None]:
    """Record ``change_info`` in the ``extra_info`` of every change flushed in the block.

    Blocks nest, with each other and with :func:`~chrononaut.acting_as` blocks: an
    inner block adds to (and may override) the outer block's info.

    :raises ChrononautException: there is no Flask application context.
    :raises InvalidArgumentError: ``change_info`` has a ``hidden_cols_changed`` key, which
        Chrononaut records itself.
    """
    if not has_app_context():
        raise ChrononautException("`extra_change_info` needs a Flask application context.")
    refuse_reserved_keys(change_info)
    block = object()
    open_block(block, extra_info=change_info, explains=True)
    try:
        yield
    finally:
        close_block(block)


def rationale(text: str) -> AbstractContextManager[None]:
    """Record ``{"rationale": text}`` with every change flushed in the block.

    :raises ChrononautException: there is no Flask application context.
    """
    return extra_change_info(rationale=text)


def append_change_info(obj: Versioned, **change_info: Any) -> AbstractContextManager[None]:
    """Attach ``change_info`` to the next versions recorded for ``obj``.

    The info stays with the object until a commit has recorded it, so the commit may
    come after the block. It can be used with ``with`` or called on its own.

    :raises ChrononautException: ``obj`` is not a :class:`~chrononaut.Versioned` object.
    :raises InvalidArgumentError: ``change_info`` has a ``hidden_cols_changed`` key, which
        Chrononaut records itself.
    """
    if not isinstance(obj, Versioned):
        raise InvalidArgumentError(
            f"`append_change_info` takes a Versioned object, not {type(obj).__name__}."
        )
    refuse_reserved_keys(change_info)
    inspect(obj).info.setdefault(APPENDED_CHANGE_INFO_KEY, {}).update(change_info)
    return nullcontext()
