"""``@larder.stable``: a declared schema (name, version, field types) for your own classes,
so they key exactly like a Rust ``#[derive(StableKey)]`` type of the same schema."""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import sys
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from . import _larder

__all__ = ["skip", "stable"]

T = TypeVar("T", bound=type)


class _Skip:
    """``typing.Annotated[T, larder.skip]``: the field is left out of the key (Rust's
    ``#[stable_key(skip)]``)."""

    def __repr__(self) -> str:
        return "larder.skip"


skip = _Skip()

_DYN = ("dyn",)

if sys.version_info >= (3, 10):
    import types

    _UNION_TYPES: tuple[Any, ...] = (Union, types.UnionType)
else:  # pragma: no cover
    _UNION_TYPES = (Union,)

_SEQ = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_SET = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
_MAP = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _descriptor(ann: Any) -> tuple[Any, ...]:
    """The encoding descriptor of one annotation (see ``crates/larder-py/src/keys.rs``)."""
    origin = get_origin(ann)
    args = get_args(ann)
    if origin is typing.Annotated:
        base, *meta = args
        for m in meta:
            if isinstance(m, _larder.Width):
                return m.descriptor()
        return _descriptor(base)
    if origin in _UNION_TYPES:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(rest) != len(args):
            return ("opt", _descriptor(rest[0]))
        return _DYN
    if origin in _SEQ:
        return ("seq", _descriptor(args[0]) if args else _DYN)
    if origin in _SET:
        return ("set", _descriptor(args[0]) if args else _DYN)
    if origin in _MAP:
        if len(args) == 2:
            return ("map", _descriptor(args[0]), _descriptor(args[1]))
        return ("map", _DYN, _DYN)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return ("seq", _descriptor(args[0]))
        return ("tuple", [_descriptor(a) for a in args])
    if isinstance(ann, _larder.Width):
        return ann.descriptor()
    return _DYN


def _skipped(ann: Any) -> bool:
    return get_origin(ann) is typing.Annotated and any(isinstance(m, _Skip) for m in get_args(ann))


def _fields(cls: type) -> list[tuple[str, Any]]:
    """(name, annotation) of the fields, in declaration order."""
    hints = get_type_hints(cls, include_extras=True)
    if dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls)]
    elif isinstance(getattr(cls, "_fields", None), tuple):  # NamedTuple
        names = list(cls._fields)  # type: ignore[attr-defined]
    elif isinstance(getattr(cls, "model_fields", None), dict):  # pydantic v2
        names = list(cls.model_fields)  # type: ignore[attr-defined]
    else:
        raise TypeError(
            "@larder.stable applies to dataclasses, typing.NamedTuple classes, pydantic models "
            f"and Enum classes; {cls.__qualname__} is none of these"
        )
    return [(n, hints.get(n, Any)) for n in names]


def stable(
    cls: T | None = None,
    *,
    name: str | None = None,
    version: int = 1,
    variant: str | None = None,
    tuple: bool = False,
) -> Any:
    """Declares the key schema of a class, as Rust's ``#[derive(StableKey)]`` does.

    The key of an instance is the Rust encoding of a struct with this ``name`` (default: the
    class name), ``version`` and the fields in declaration order, so::

        @larder.stable(name="LoanQuote", version=1)
        @dataclass
        class LoanQuote:
            user_id: int                              # u64 (a plain int >= 0 is a u64)
            amount_won: int
            rate_bp: Annotated[int, larder.u32]       # declare Rust's narrower widths
            term_months: Annotated[int, larder.u32]

    keys exactly like ``#[derive(StableKey)] struct LoanQuote { user_id: u64, amount_won: u64,
    rate_bp: u32, term_months: u32 }``. ``Optional[X]`` fields are Rust ``Option<X>``;
    ``list[X]``, ``set[X]``, ``dict[K, V]`` and ``tuple[...]`` carry their element types;
    ``Annotated[T, larder.skip]`` leaves a field out. ``tuple=True`` makes a tuple struct
    (``struct Point(i32, i32)``); a class without fields is a unit struct. ``variant="Circle"``
    makes the class one variant of the Rust enum ``name``. On an ``enum.Enum`` class, members
    key as the Rust enum's unit variants of the same names.

    Renaming a field, reordering fields or changing the version changes every key of the
    class; renaming the Python class while keeping ``name`` keeps them.
    """

    def apply(c: T) -> T:
        if not isinstance(c, type):
            raise TypeError("@larder.stable decorates a class")
        schema_name = name if name is not None else c.__name__
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"version must be an int, got {type(version).__name__}")
        if issubclass(c, enum.Enum):
            if variant is not None or tuple:
                raise TypeError(
                    "an Enum's members are unit variants: variant= and tuple= do not apply"
                )
            schema = _larder.Schema("enum", schema_name, version, [])
        else:
            fields = [(n, _descriptor(a)) for n, a in _fields(c) if not _skipped(a)]
            if variant is not None:
                if not fields:
                    kind = "variant_unit"
                elif tuple:
                    kind = "variant_tuple"
                else:
                    kind = "variant_named"
            elif not fields:
                kind = "unit_struct"
            elif tuple:
                kind = "tuple_struct"
            else:
                kind = "struct"
            schema = _larder.Schema(kind, schema_name, version, fields, variant)
        type.__setattr__(c, "__larder_schema__", schema)
        return c

    if cls is not None:
        return apply(cls)
    return apply
