"""The filter dialect read plainly in Python: the oracle the stores' compiled filters are
checked against (the semantics are in indexer/filters.py's docstring)."""

import fnmatch
import re

from indexer.filters import ID_FIELD, All, Any, Condition


def values(metadata: dict, field: tuple[str, ...], doc_id: str) -> list:
    """The field's values: its value, a list's scalar elements; none when missing."""
    if field == (ID_FIELD,):
        return [doc_id]
    value = metadata
    for part in field:
        if not isinstance(value, dict) or part not in value:
            return []
        value = value[part]
    items = value if isinstance(value, list) else [value]
    return [v for v in items if not isinstance(v, (dict, list))]


def same_kind(a, b) -> bool:
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, number) and isinstance(b, number):
        return True
    return isinstance(a, str) and isinstance(b, str)


def equal(found: list, wanted) -> bool:
    if wanted is None:
        return all(v is None for v in found)
    return any(v is not None and same_kind(v, wanted) and v == wanted for v in found)


def matches(node, metadata: dict, doc_id: str) -> bool:
    if isinstance(node, All):
        return all(matches(p, metadata, doc_id) for p in node.parts)
    if isinstance(node, Any):
        return any(matches(p, metadata, doc_id) for p in node.parts)
    assert isinstance(node, Condition)
    found = values(metadata, node.field, doc_id)
    op, value = node.op, node.value
    if op == "eq":
        return equal(found, value)
    if op == "ne":
        return not equal(found, value)
    if op == "in":
        return any(equal(found, v) for v in value)
    if op == "nin":
        return not any(equal(found, v) for v in value)
    if op == "glob":
        pattern = re.compile(fnmatch.translate(value))
        return any(isinstance(v, str) and pattern.fullmatch(v) for v in found)
    compare = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
               "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}[op]
    return any(v is not None and same_kind(v, value) and compare(v, value) for v in found)
