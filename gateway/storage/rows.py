"""Row mappers compiled from a dataclass: its fields are the columns, in their order.

A record's dataclass is its one declaration. The column list, the object-to-row
tuple and the row-to-object constructor are compiled from its fields once, at
import, into plain unrolled functions (as fast as hand-written ones), so a field
added to the class is written and read with no other edit, and none can be left
out. An enum field is stored as its value and read back through its enum (also
when it is optional); a StrEnum or IntEnum member is bound as it is, since SQLite
stores it as its value anyway, and ``.value`` (an enum property) cost about 2 us a
field on the loaded bench machine. A field may be stored under another column name.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RowMapping(Generic[T]):
    """``columns``, ``to_row`` and ``from_row`` of a dataclass, in field order."""

    __slots__ = ("columns", "from_row", "to_row")

    def __init__(self, cls: type[T], renamed: Mapping[str, str] | None = None) -> None:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if any(f.kw_only or not f.init for f in fields):
            raise TypeError(f"{cls.__name__}: every field must be a positional __init__ argument")
        hints = typing.get_type_hints(cls)
        renamed = renamed or {}
        self.columns = tuple(renamed.get(f.name, f.name) for f in fields)
        namespace: dict[str, Any] = {"cls": cls}
        stored, loaded = [], []
        for index, f in enumerate(fields):
            kind, optional = _enum_of(hints[f.name])
            if kind is None:
                stored.append(f"o.{f.name}")
                loaded.append(f"r[{index}]")
                continue
            namespace[f"e{index}"] = kind
            if issubclass(kind, str | int):  # a StrEnum or IntEnum member binds as its value
                stored.append(f"o.{f.name}")
            elif optional:
                stored.append(f"None if o.{f.name} is None else o.{f.name}.value")
            else:
                stored.append(f"o.{f.name}.value")
            if optional:
                loaded.append(f"None if r[{index}] is None else e{index}(r[{index}])")
            else:
                loaded.append(f"e{index}(r[{index}])")
        source = (
            f"def to_row(o):\n    return ({', '.join(stored)},)\n"
            f"def from_row(r):\n    return cls({', '.join(loaded)})\n"
        )
        exec(source, namespace)
        self.to_row: Callable[[T], tuple[object, ...]] = namespace["to_row"]
        self.from_row: Callable[[Sequence[Any]], T] = namespace["from_row"]


def _enum_of(hint: object) -> tuple[type[enum.Enum] | None, bool]:
    """The enum a field holds, if it holds one, and whether it may be None instead."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint, False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1:
            kind, _ = _enum_of(members[0])
            return kind, kind is not None
    return None, False
