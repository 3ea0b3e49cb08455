"""Who is acting and why, for code that runs outside a request.

A job, a ``flask`` command or a task-queue worker has no Flask-Login user to record.
:func:`acting_as` names one, with the reason, for every change flushed inside the
block. The blocks live in a context variable (see
:mod:`chrononaut.capture.change_info`), so they need no Flask application context,
each asyncio task and each thread sees its own, and :func:`current_change_context`
and :func:`resume_change_context` carry them, as a JSON-able dict, to another
process.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from chrononaut.capture.change_info import (
    close_block,
    current_blocks,
    open_block,
    refuse_reserved_keys,
)
from chrononaut.exceptions import InvalidArgumentError

_Function = TypeVar("_Function", bound=Callable[..., Any])

#: The keys of the dict :func:`current_change_context` returns.
_CONTEXT_KEYS = ("actor", "override_request_user", "extra_info")


class ActingBlock:
    """A block opened by :func:`acting_as` or :func:`resume_change_context`.

    Use it in a ``with`` statement, or as a decorator of a function or a coroutine
    function, each call of which then runs inside the block. One block may be
    entered by several threads or tasks at once: each closes its own entry.
    """

    __slots__ = ("_actor", "_extra_info", "_override_request_user")

    def __init__(
        self,
        actor: str | int | None,
        override_request_user: bool,
        extra_info: dict[str, Any],
    ) -> None:
        self._actor = actor
        self._override_request_user = override_request_user
        self._extra_info = extra_info

    def __enter__(self) -> None:
        open_block(
            self,
            actor=self._actor,
            override_request_user=self._override_request_user,
            extra_info=self._extra_info,
            explains=bool(self._extra_info),
        )

    def __exit__(self, *exc_info: object) -> None:
        close_block(self)

    def __call__(self, function: _Function) -> _Function:
        """Run each call of ``function`` inside the block.

        :raises InvalidArgumentError: ``function`` is a generator function, whose body
            would run after the call has returned and the block has closed.
        """
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise InvalidArgumentError(
                f"`acting_as` cannot decorate the generator function {function.__name__}: "
                "its body runs after the call returns. Use a `with` block inside it."
            )
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_coroutine(*args: Any, **kwargs: Any) -> Any:
                # Entered when the coroutine runs, in the task that awaits it.
                with self:
                    return await function(*args, **kwargs)

            return cast(_Function, run_coroutine)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return function(*args, **kwargs)

        return cast(_Function, run)

    def __repr__(self) -> str:
        return (
            f"acting_as({self._actor!r}, override_request_user="
            f"{self._override_request_user!r}, extra_info={self._extra_info!r})"
        )


def acting_as(
    actor: str | int | None = None,
    /,
    *,
    rationale: str | None = None,
    override_request_user: bool = False,
    **details: Any,
) -> ActingBlock:
    """Say who makes the changes flushed inside the block, and why.

    .. code-block:: python

        with acting_as("billing-job", rationale="monthly invoices", ticket="OPS-12"):
            create_invoices()
            db.session.commit()

    ``actor`` is recorded as ``user_info["user_id"]``; ``rationale`` and the other
    keywords go into ``extra_info``, like :func:`~chrononaut.extra_change_info`'s. No
    Flask application context is needed to open the block, only to flush.

    Blocks nest with each other and with ``extra_change_info`` blocks: an inner block
    adds details to the outer ones' (overriding those with the same key), and its
    actor, if it names one, replaces theirs. Each block is closed when it is left,
    by an exception too. Each asyncio task starts with the blocks open where it was
    created; a new thread starts with none (run it in
    ``contextvars.copy_context().run`` to give it the caller's).

    In a request with an authenticated Flask-Login user, that user is recorded, not
    the actor, unless ``override_request_user`` is true; the block's details are
    recorded either way. A model that overrides ``_fetch_current_user_id`` or
    ``_capture_user_info`` records what its override returns.

    Strict mode (``CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO``) is satisfied by a block
    that gives a rationale or other details, not by an actor alone: it asks why.

    :param actor: who acts: a user's id, or the name of a job or service. ``None``
        keeps the actor of the blocks around this one.
    :param rationale: why, recorded as ``extra_info["rationale"]``.
    :param override_request_user: record the actor even in a request with an
        authenticated user.
    :param details: further JSON values recorded in ``extra_info``.
    :return: the block, for ``with`` or as a decorator (:class:`ActingBlock`).
    :raises InvalidArgumentError: ``actor`` is not a non-empty string or an integer;
        ``rationale`` is not a non-empty string; ``override_request_user`` is not a
        bool or is true without an actor; a detail is named ``hidden_cols_changed``,
        which Chrononaut records itself.
    """
    extra_info = dict(details)
    if rationale is not None:
        if not isinstance(rationale, str) or not rationale.strip():
            raise InvalidArgumentError(
                f"The rationale of `acting_as` must be a non-empty string, not {rationale!r}."
            )
        extra_info["rationale"] = rationale
    return _block(actor, override_request_user, extra_info)


def current_change_context() -> dict[str, Any] | None:
    """Return what the open :func:`acting_as` and :func:`~chrononaut.extra_change_info`
    blocks say, as a dict ready for JSON, or ``None`` when no block is open.

    It has three keys: ``"actor"`` (``None`` when no block names one),
    ``"override_request_user"`` and ``"extra_info"`` (the merged details of the
    blocks). :func:`resume_change_context` opens a block from it elsewhere, for
    example in the task-queue worker that runs a job queued here. The details are
    JSON values as far as the blocks were given JSON values. The Flask-Login user of
    a request is not part of it.
    """
    blocks = current_blocks()
    if blocks.enclosing is None:
        return None
    return {
        "actor": blocks.actor,
        "override_request_user": blocks.override_request_user,
        "extra_info": dict(blocks.extra_info),
    }


def resume_change_context(context: Mapping[str, Any] | None) -> ActingBlock:
    """Open a block that says what ``context`` says.

    :param context: a dict that :func:`current_change_context` returned (after a trip
        through JSON, say), or ``None``, which opens a block that changes nothing.
    :return: the block, for ``with`` or as a decorator (:class:`ActingBlock`).
    :raises InvalidArgumentError: ``context`` is not such a dict: it has other keys,
        ``"extra_info"`` is not a mapping of strings to values or holds
        ``hidden_cols_changed``, or the actor or ``"override_request_user"`` is
        not one :func:`acting_as` takes.
    """
    if context is None:
        return ActingBlock(None, False, {})
    if not isinstance(context, Mapping):
        raise InvalidArgumentError(
            f"A change context must be a dict, not {type(context).__name__}."
        )
    unknown = sorted(map(str, set(context) - set(_CONTEXT_KEYS)))
    if unknown:
        raise InvalidArgumentError(
            f"A change context has only the keys {', '.join(_CONTEXT_KEYS)}, as "
            f"`current_change_context()` returns it; not {', '.join(unknown)}."
        )
    extra_info = context.get("extra_info", {})
    if not isinstance(extra_info, Mapping) or not all(isinstance(key, str) for key in extra_info):
        raise InvalidArgumentError(
            "The extra_info of a change context must be a dict with string keys."
        )
    return _block(
        context.get("actor"), context.get("override_request_user", False), dict(extra_info)
    )


def _block(actor: Any, override_request_user: Any, extra_info: dict[str, Any]) -> ActingBlock:
    """Return the block of checked arguments.

    :raises InvalidArgumentError: see :func:`acting_as`.
    """
    # bool is an int, but True is no one's id.
    if isinstance(actor, bool) or not isinstance(actor, (str, int, type(None))):
        raise InvalidArgumentError(
            f"The actor must be a string or an integer, not {type(actor).__name__}."
        )
    if isinstance(actor, str) and not actor.strip():
        raise InvalidArgumentError("The actor must not be an empty string.")
    if not isinstance(override_request_user, bool):
        raise InvalidArgumentError(
            f"`override_request_user` must be True or False, not {override_request_user!r}."
        )
    if override_request_user and actor is None:
        raise InvalidArgumentError("`override_request_user=True` needs an actor to record.")
    refuse_reserved_keys(extra_info)
    return ActingBlock(actor, override_request_user, extra_info)
