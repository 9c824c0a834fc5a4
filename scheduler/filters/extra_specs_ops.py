"""The operator language of flavor extra specs and aggregate metadata (Nova's).

A requirement is either a plain string, which must equal the value exactly, or
an operator followed by operands, separated by blanks:

* ``= N`` means the value is at least N (numbers); ``== N``, ``!= N``, ``>= N``
  and ``<= N`` compare numbers.  There is no numeric ``>`` or ``<``: such a
  requirement is a plain string.
* ``s== S``, ``s!= S``, ``s< S``, ``s<= S``, ``s> S``, ``s>= S`` compare strings.
* ``<in> S``: S occurs in the value; ``<all-in> A B ...``: each word occurs in it
  (both are substring tests, as in Nova).
* ``<or> A <or> B ...``: the value is one of the words.

An operator with no operand, or a number that does not parse, never matches.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "=": operator.ge, "==": operator.eq, "!=": operator.ne,
    ">=": operator.ge, "<=": operator.le,
}
_STRING: dict[str, Callable[[str, str], bool]] = {
    "s==": operator.eq, "s!=": operator.ne, "s<": operator.lt,
    "s<=": operator.le, "s>": operator.gt, "s>=": operator.ge,
}


@functools.lru_cache(maxsize=8192)
def match(value: str, requirement: str) -> bool:
    """Whether ``value`` satisfies ``requirement`` (see the module docstring)."""
    op, *operands = requirement.split() or [""]
    if op == "<or>":
        return value in operands[::2]
    if op not in _NUMERIC and op not in _STRING and op not in ("<in>", "<all-in>"):
        return value == requirement
    if not operands:
        return False
    if op == "<all-in>":
        return all(word in value for word in operands)
    if op == "<in>":
        return operands[0] in value
    if op in _STRING:
        return _STRING[op](value, operands[0])
    try:
        return _NUMERIC[op](float(value), float(operands[0]))
    except ValueError:
        return False
