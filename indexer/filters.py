"""Metadata filters: the Chroma/Mongo operator dialect, parsed once into a small tree.

    {"path": {"$glob": "api/*.md"}, "year": {"$gte": 2020}}
    {"$or": [{"tag": "faq"}, {"tag": {"$in": ["howto", "guide"]}}]}

A filter is a JSON object. Each key is a metadata field (a dotted key reaches into nested
objects: `author.name`; `id` is the document's id) mapped to a value (shorthand for `$eq`)
or to an object of operators, all of which must hold; `$and` / `$or` take lists of filters.
Operators: `$eq $ne $gt $gte $lt $lte $in $nin $glob`.

Semantics, the same in every store:
- A field's values are its value, or the elements of a list (`{"tag": "faq"}` matches
  `"tag": ["faq", "howto"]`). A missing field has no values.
- `$eq`, `$in` and the comparisons hold when *some* value matches; `$ne` and `$nin` are
  their negations (so they also match documents without the field, as in MongoDB).
  `{"field": null}` matches a missing or null field.
- Values compare only with values of their kind: numbers with numbers (int and float alike),
  strings with strings (code-point order, so ISO dates compare as dates), booleans by
  equality. `{"year": {"$gte": "2020"}}` never matches a numeric year.
- `$glob` matches strings against a shell pattern: `*` any run of characters (slashes
  included), `?` one character, `[abc]` / `[!abc]` a class; case-sensitive.

Each store compiles the tree to its own query language; `parse_filter` rejects anything
outside the dialect with a message that names the problem (`FilterError`, a 422 over HTTP).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from embedder.errors import InvalidInputError

from .errors import IndexerError

COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
OPERATORS = ("$eq", "$ne", *COMPARISONS, "$in", "$nin", "$glob")
ID_FIELD = "id"  # the document's id, not a metadata key
MAX_LIST = 1_000  # values in one $in / $nin
MAX_DEPTH = 16  # nesting of $and / $or
MAX_FIELD_CHARS = 200


class FilterError(IndexerError, InvalidInputError):
    """A filter outside the dialect: unknown operator, wrong type, malformed structure."""


@dataclass(frozen=True)
class Condition:
    """One test on one field: `op` is an operator without its `$` (`eq`, `in`, `glob`...)."""

    field: tuple[str, ...]  # the dotted key, split
    op: str
    value: object  # a scalar; a tuple of scalars for in / nin; a str for glob


@dataclass(frozen=True)
class All:
    """Every part holds (`$and`, or several keys in one object)."""

    parts: tuple


@dataclass(frozen=True)
class Any:
    """Some part holds (`$or`)."""

    parts: tuple


Filter = Condition | All | Any


def parse_filter(spec) -> Filter | None:
    """Parse a filter object into a tree; None for no filter (`None` or `{}`).

    Raises:
        FilterError: with a message naming what is wrong and where.
    """
    if spec is None:
        return None
    node = _parse(spec, "the filter", 0)
    return None if isinstance(node, All) and not node.parts else node


def _parse(spec, where: str, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise FilterError(f"The filter nests $and/$or more than {MAX_DEPTH} levels deep.")
    if not isinstance(spec, dict):
        raise FilterError(f"{_cap(where)} must be an object like {{\"field\": value}}; got "
                          f"{_kind(spec)}.")
    parts: list[Filter] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} in {where} takes a non-empty list of filters.")
            children = tuple(_parse(v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value))
            parts.append(All(children) if key == "$and" else Any(children))
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"Unknown operator {key!r} at the top of {where}: use a field "
                              f"name, $and or $or.")
        else:
            parts.extend(_field_conditions(_field(key), value))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _field(key) -> tuple[str, ...]:
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_FIELD_CHARS:
        raise FilterError(f"Filter field names are non-empty strings of at most "
                          f"{MAX_FIELD_CHARS} characters; got {key!r}.")
    parts = tuple(key.split("."))
    if any(not part or any(c in part for c in '"\\\x00') for part in parts):
        raise FilterError(f"Filter field {key!r} is not a usable name (empty dotted part, "
                          f"quote, backslash or NUL).")
    return parts


def _field_conditions(field: tuple[str, ...], value) -> list[Condition]:
    name = ".".join(field)
    if not isinstance(value, dict):
        return [_condition(field, "$eq", value, name)]
    if not value:
        raise FilterError(f"The operators for {name!r} are an empty object; give at least "
                          f"one, e.g. {{\"$eq\": ...}}.")
    return [_condition(field, op, operand, name) for op, operand in value.items()]


def _condition(field, op, operand, name: str) -> Condition:
    if op not in OPERATORS:
        raise FilterError(f"Unknown filter operator {op!r} on {name!r}; use one of "
                          f"{' '.join(OPERATORS)}.")
    if op in ("$eq", "$ne"):
        _check_scalar(operand, f"{op} on {name!r}")
        return Condition(field, op[1:], _normal(operand))
    if op in COMPARISONS:
        if not (_is_number(operand) or isinstance(operand, str)):
            raise FilterError(f"{op} on {name!r} compares with a number or a string; got "
                              f"{_kind(operand)}.")
        return Condition(field, op[1:], _normal(operand))
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand or len(operand) > MAX_LIST:
            raise FilterError(f"{op} on {name!r} takes a list of 1 to {MAX_LIST} values; got "
                              f"{_kind(operand)}.")
        for item in operand:
            _check_scalar(item, f"a value of {op} on {name!r}")
        return Condition(field, op[1:], tuple(_normal(v) for v in operand))
    if not isinstance(operand, str):
        raise FilterError(f"$glob on {name!r} takes a pattern string; got {_kind(operand)}.")
    glob_to_regex(operand)  # a malformed pattern fails here, not in the store
    return Condition(field, "glob", operand)


def _check_scalar(value, where: str) -> None:
    if value is None or isinstance(value, (str, bool)) or _is_number(value):
        return
    raise FilterError(f"{_cap(where)} must be a string, number, boolean or null; got "
                      f"{_kind(value)}.")


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _normal(value):
    """Integral floats as ints, so 2020.0 and 2020 are one value to every store."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError("Filter numbers must be finite (no NaN or Infinity).")
    return value


def _kind(value) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def glob_to_regex(pattern: str) -> str:
    """An anchored regular expression for a shell pattern, valid in Python and PostgreSQL:
    `*` any run of characters, `?` one, `[abc]` / `[!abc]` a class, everything else literal.

    Raises:
        FilterError: an unclosed `[`.
    """
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise FilterError(f"The $glob pattern {pattern!r} has an unclosed '['.")
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            escaped = "".join("\\" + ch if ch in "\\^[]" else ch for ch in body)
            out.append(f"[{'^' if negate else ''}{escaped}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return "".join(out)


_WHERE = re.compile(r"^\s*([^=!<>\s][^=!<>]*?)\s*(!=|>=|<=|=|>|<)\s*(.*)$", re.S)
_WHERE_OPS = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def filter_from_options(where: list[str] | tuple = (), path: str | None = None,
                        raw: str | None = None) -> dict | None:
    """A filter object from command-line options, all of which must hold.

    Args:
        where: conditions `KEY=VALUE` (also `!=`, `>`, `>=`, `<`, `<=`); VALUE is read as
            JSON when it is a JSON number, `true`, `false`, `null` or a quoted string, else
            as text: `year>=2020`, `tag=faq`, `draft=false`.
        path: a glob on the document's path within its folder (`api/*.md`).
        raw: a whole filter as JSON, for what options cannot say (`$or`, `$in`).

    Raises:
        FilterError: a condition without an operator, or JSON that does not parse.
    """
    import json

    parts: list[dict] = []
    for condition in where:
        match = _WHERE.match(condition)
        if not match:
            raise FilterError(f"--where {condition!r} is not KEY=VALUE (or !=, >, >=, <, <=).")
        key, op, value = match.groups()
        try:
            parsed = json.loads(value)
            if isinstance(parsed, (dict, list)):
                parsed = value
        except ValueError:
            parsed = value
        parts.append({key: {_WHERE_OPS[op]: parsed}})
    if path:
        parts.append({"path": {"$glob": path}})
    if raw:
        try:
            parts.append(json.loads(raw))
        except ValueError as exc:
            raise FilterError(f"--filter is not valid JSON: {exc}.") from None
    if not parts:
        return None
    spec = parts[0] if len(parts) == 1 else {"$and": parts}
    parse_filter(spec)  # fail now, with the dialect's message
    return spec
