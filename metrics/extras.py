"""A daily row's `extras`: what the vendors' exports carry beyond the four counters, in the
shapes `parsers.copilot` and `parsers.claude_code` give them. Summed in two places: the parts
of one report at ingest (`merge_extras`), and a developer's days on their page (`total`)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import reduce

from metrics.parsers.copilot import BREAKDOWN_FIELDS

# Identifiers and dates inside vendor records: kept from the first part, never summed.
NOT_SUMMED = frozenset(
    {"user_id", "organization_id", "enterprise_id", "team_id", "entity_id_partition"}
)


def _numbers(values: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _entry_label(entry: dict) -> tuple:
    """What names an entry of a list of objects (Claude Code's `by_model`: its model)."""
    return tuple(sorted((k, v) for k, v in entry.items() if isinstance(v, str)))


def merge_extras(left: dict, right: dict) -> dict:
    """Sum two rows' extras: numbers add, flags OR, counter lists (breakdowns) add element by
    element, lists of objects add the entries of the same name (their text fields), other
    lists are joined without repeats, objects recurse."""
    merged = dict(left)
    for key, value in right.items():
        if key in NOT_SUMMED:
            merged.setdefault(key, value)
            continue
        if key not in merged:
            merged[key] = value
            continue
        mine = merged[key]
        if isinstance(mine, bool) or isinstance(value, bool):
            merged[key] = bool(mine) or bool(value)
        elif isinstance(mine, int | float) and isinstance(value, int | float):
            merged[key] = mine + value
        elif isinstance(mine, list) and isinstance(value, list):
            if len(mine) == len(value) and _numbers(mine) and _numbers(value):
                merged[key] = [a + b for a, b in zip(mine, value, strict=True)]
            elif all(isinstance(v, dict) for v in (*mine, *value)):
                entries: dict[tuple, dict] = {}
                for entry in (*mine, *value):
                    label = _entry_label(entry)
                    seen = entries.get(label)
                    entries[label] = entry if seen is None else merge_extras(seen, entry)
                merged[key] = list(entries.values())
            else:
                merged[key] = mine + [v for v in value if v not in mine]
        elif isinstance(mine, dict) and isinstance(value, dict):
            merged[key] = merge_extras(mine, value)
    return merged


def total(extras: Iterable[dict]) -> dict:
    """Many rows' extras summed (a developer's days), as the parts of a report are."""
    return reduce(merge_extras, extras, {})


def _counters(value) -> list | None:
    """A breakdown entry's counters (`parsers.copilot.BREAKDOWN_FIELDS`); an entry of a
    two-dimensional breakdown is summed over its second dimension."""
    if isinstance(value, list):
        return value if len(value) == len(BREAKDOWN_FIELDS) and _numbers(value) else None
    if isinstance(value, dict):
        lists = [c for c in map(_counters, value.values()) if c is not None]
        return [sum(column) for column in zip(*lists, strict=True)] if lists else None
    return None


def breakdown(summed: dict, key: str, *, shown: int = 10) -> list[tuple[str, list]]:
    """One Copilot breakdown of a total: (label, [generated, accepted, lines added,
    interactions]), the most generated first; past `shown`, the rest as one "Other"."""
    entries = summed.get(key)
    if not isinstance(entries, dict):
        return []
    rows = sorted(
        ((label, c) for label, value in entries.items() if (c := _counters(value)) is not None),
        key=lambda row: (-row[1][0], -row[1][1], row[0]),
    )
    if len(rows) > shown:
        rest = [sum(column) for column in zip(*(c for _label, c in rows[shown - 1 :]), strict=True)]
        rows = [*rows[: shown - 1], (f"Other ({len(rows) - shown + 1})", rest)]
    return rows


def words(name: str) -> str:
    """A vendor's identifier as words: `chat_panel_agent_mode` → "Chat panel agent mode",
    `multi_edit_tool` → "Multi edit"."""
    name = name.removesuffix("_tool").replace("_", " ").strip()
    return name[:1].upper() + name[1:] if name else "Unknown"
