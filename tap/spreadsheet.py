"""CSV downloads as people open them: in a spreadsheet.

* `BOM` first: Excel reads a CSV without it in the machine's legacy code page, so "José"
  arrives as "JosÃ©"; with it, as UTF-8 (other readers skip it; Python's is `utf-8-sig`).
* `cell()` on every value: a cell that starts like a formula (= + - @, tab, CR) would run
  as one (CSV injection), so text gets a leading ' ; plain numbers such as -0.25 cannot be
  formulas and stay numbers.
* `Echo` lets `csv.writer` hand back each line, for streamed responses.
"""

from __future__ import annotations

import re

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?$")


def cell(value):
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not NUMBER.match(value):
        return "'" + value
    return value


class Echo:
    """A file for `csv.writer` whose write() returns the line instead of storing it."""

    def write(self, value):
        return value
