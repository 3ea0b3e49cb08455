"""Stored values as people read them, the same in the viewer and the commands.

A missing value is one mark everywhere (:data:`MISSING`), an enum column's stored
``"OrderStatus.PAID"`` reads as its member's name, ``PAID``, and a change of a text shows
which part of it changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Enum, inspect

from chrononaut.interfaces.text import visible

if TYPE_CHECKING:
    import enum

    from chrononaut.interfaces.timeline import TimelineEntry

#: Shown for a missing value (``None``, JSON ``null``): in a page with
#: :data:`MISSING_LABEL` as the text that screen readers say instead.
MISSING = "\u2014"
MISSING_LABEL = "none"

# Words, runs of white space and runs of other characters: what a change highlights.
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]+")

# Changed lines are compared word by word while the two blocks' words multiply to at
# most this (the comparison takes up to that many steps); larger changed blocks are
# marked whole rather than spend seconds on one page.
_MAX_WORD_PAIRS = 1_000_000


@dataclass(frozen=True)
class InlineDiff:
    """Two texts cut into parts, each part flagged when it is not in the other text.

    :ivar before: ``(text, removed)`` parts of the older text.
    :ivar after: ``(text, added)`` parts of the newer text.
    """

    before: tuple[tuple[str, bool], ...]
    after: tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class ColumnChange:
    """One column's change as people read it.

    :ivar column: the column (attribute) name.
    :ivar before: the value before, as :func:`readable_value` gives it.
    :ivar after: the value after.
    :ivar inline: the changed parts of a text that was edited, else ``None``.
    """

    column: str
    before: Any
    after: Any
    inline: InlineDiff | None


def readable_value(model: type[Any] | None, column: str, stored: Any) -> Any:
    """Return the stored value of ``column`` of ``model`` as people read it.

    The value of an ``Enum`` column, stored as ``str(member)``, becomes the member's
    name; anything else, including values no member was stored as, is returned as
    stored.
    """
    if model is None or not isinstance(stored, str):
        return stored
    column_property = inspect(model).column_attrs.get(column)
    if column_property is None:
        return stored
    column_type = column_property.columns[0].type
    if not isinstance(column_type, Enum) or column_type.enum_class is None:
        return stored
    return _member_names(column_type.enum_class).get(stored, stored)


@lru_cache(maxsize=256)
def _member_names(enum_class: type[enum.Enum]) -> dict[str, str]:
    return {str(member): member.name for member in enum_class}


def column_changes(entry: TimelineEntry) -> list[ColumnChange]:
    """Return the changes of ``entry``'s tracked columns, sorted by column name."""
    changes = []
    for column, (old, new) in sorted(entry.changes.items()):
        before = readable_value(entry.model, column, old)
        after = readable_value(entry.model, column, new)
        changes.append(ColumnChange(column, before, after, inline_diff(before, after)))
    return changes


def readable_state(entry: TimelineEntry) -> dict[str, Any]:
    """Return every tracked value of ``entry``'s version as people read it, sorted by
    column name, hidden columns left out."""
    return {
        column: readable_value(entry.model, column, value)
        for column, value in sorted(entry.state.items())
    }


def as_text(value: Any) -> str:
    """Return ``value`` as one line of text to print: :data:`MISSING` for ``None``,
    text through :func:`~chrononaut.interfaces.text.visible`, anything else as JSON."""
    if value is None:
        return MISSING
    return visible(value if isinstance(value, str) else json.dumps(value))


def inline_diff(old: Any, new: Any) -> InlineDiff | None:
    """Return the parts of two texts that differ, line by line, then word by word.

    :return: ``None`` unless both are text that share a word, so that a value replaced
        as a whole is shown as it is.
    """
    if not isinstance(old, str) or not isinstance(new, str):
        return None
    before: list[tuple[str, bool]] = []
    after: list[tuple[str, bool]] = []
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    lines = SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in lines.get_opcodes():
        old_part, new_part = "".join(old_lines[i1:i2]), "".join(new_lines[j1:j2])
        if tag == "equal":
            before.append((old_part, False))
            after.append((new_part, False))
        elif tag == "replace":
            _diff_words(old_part, new_part, before, after)
        else:
            before.append((old_part, True))
            after.append((new_part, True))
    if not any(not changed and part.strip() for part, changed in before):
        return None
    return InlineDiff(_joined(before), _joined(after))


def _diff_words(
    old: str, new: str, before: list[tuple[str, bool]], after: list[tuple[str, bool]]
) -> None:
    old_words, new_words = _TOKENS.findall(old), _TOKENS.findall(new)
    if len(old_words) * len(new_words) > _MAX_WORD_PAIRS:
        before.append((old, True))
        after.append((new, True))
        return
    words = SequenceMatcher(None, old_words, new_words, autojunk=False)
    for tag, i1, i2, j1, j2 in words.get_opcodes():
        same = tag == "equal"
        before.append(("".join(old_words[i1:i2]), not same))
        after.append(("".join(new_words[j1:j2]), not same))


def _joined(parts: list[tuple[str, bool]]) -> tuple[tuple[str, bool], ...]:
    """Drop empty parts and join neighbours that are both changed or both not; white
    space between two changed parts counts as changed, so that a rewritten phrase is
    marked as one."""
    parts = [(text, changed) for text, changed in parts if text]
    for index in range(1, len(parts) - 1):
        text, changed = parts[index]
        if not changed and not text.strip() and parts[index - 1][1] and parts[index + 1][1]:
            parts[index] = (text, True)
    joined: list[tuple[str, bool]] = []
    for text, changed in parts:
        if joined and joined[-1][1] == changed:
            joined[-1] = (joined[-1][0] + text, changed)
        else:
            joined.append((text, changed))
    return tuple(joined)


def model_label(entry: TimelineEntry) -> str:
    """The model's class name, or the stored table name for a table no model maps."""
    table_name: str = entry.snapshot.chrononaut_meta["table_name"]
    return table_name if entry.model is None else entry.model.__name__


def columns_text(entry: TimelineEntry) -> str:
    """The columns ``entry`` changed, as one line: hidden ones marked ``(hidden)``."""
    names = [as_text(column) for column in entry.changed_columns]
    names += [f"{as_text(column)} (hidden)" for column in entry.hidden_changed]
    return ", ".join(names)


def change_info_text(entry: TimelineEntry) -> str:
    """The extra change info of ``entry`` as one line: ``name: value; ...``."""
    return "; ".join(f"{as_text(name)}: {as_text(value)}" for name, value in entry.extra.items())
