"""Every metrics parser, fuzzed with hypothesis: whatever the bytes, reading a file either
refuses it as a whole with a message (`Refused`) or yields well-formed rows and line-numbered
rejections — never another exception, never a negative count or an impossible row."""

from __future__ import annotations

import gzip
import json
import tempfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics.parsers import (
    MetricRow,
    Refused,
    Rejected,
    SeatRow,
    SeatTotal,
    TeamRow,
    open_metrics_file,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMIT = 1 << 20  # decompressed bytes

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
days = st.one_of(
    st.dates(date(1990, 1, 1), date(2100, 1, 1)).map(str),
    st.sampled_from(["2026-02-30", "2026-13-01", "yesterday", "", "2026-04-25T00:00:00Z"]),
    json_values,
)
counts = st.one_of(st.integers(-5, 10**12), json_values)

copilot_user = st.fixed_dictionaries(
    {
        "user_login": st.one_of(st.text(max_size=12), json_values),
        "day": days,
        "code_generation_activity_count": counts,
        "code_acceptance_activity_count": counts,
        "user_initiated_interaction_count": counts,
    },
    optional={"user_id": counts, "totals_by_feature": json_values, "totals_by_ide": json_values},
)
claude_code_record = st.fixed_dictionaries(
    {
        "date": days,
        "actor": st.one_of(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["user_actor", "api_actor"]), "email_address": st.text()}
            ),
            json_values,
        ),
        "core_metrics": st.one_of(
            st.fixed_dictionaries({"num_sessions": counts, "lines_of_code": json_values}),
            json_values,
        ),
    },
    optional={"tool_actions": json_values, "model_breakdown": json_values},
)
seat = st.fixed_dictionaries(
    {"assignee": st.one_of(st.fixed_dictionaries({"login": st.text(max_size=12)}), json_values)},
    optional={"created_at": days, "last_activity_at": days},
)

csv_cells = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
tap_csv = st.lists(st.lists(csv_cells, min_size=1, max_size=8), max_size=6).map(
    lambda rows: "\n".join(
        ["date,github_login,email,tool,suggestions,acceptances,completions,sessions"]
        + [",".join(row) for row in rows]
    )
)
identity_map = st.lists(st.lists(csv_cells, min_size=1, max_size=5), max_size=6).map(
    lambda rows: "\n".join(["github_login,email,name,team"] + [",".join(r) for r in rows])
)

documents = st.one_of(
    st.lists(copilot_user, max_size=6).map(lambda rs: "\n".join(json.dumps(r) for r in rs)),
    st.lists(copilot_user, max_size=6).map(json.dumps),
    st.lists(claude_code_record, max_size=6).map(
        lambda rs: json.dumps({"data": rs, "has_more": False})
    ),
    st.lists(claude_code_record, max_size=6).map(lambda rs: "\n".join(json.dumps(r) for r in rs)),
    st.lists(seat, max_size=6).map(lambda rs: json.dumps({"total_seats": len(rs), "seats": rs})),
    tap_csv,
    identity_map,
    st.text(max_size=200),
)


def encodings(text: str) -> st.SearchStrategy[bytes]:
    raw = text.encode("utf-8", "surrogatepass")
    return st.sampled_from(
        [raw, b"\xef\xbb\xbf" + raw, raw.replace(b"\n", b"\r\n"), gzip.compress(raw), raw[:-3]]
    )


def read(data: bytes) -> tuple[str, list]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        try:
            with open_metrics_file(path, max_decompressed_bytes=LIMIT) as parsed:
                return parsed.format, list(parsed.items)
        except Refused as exc:
            refusal = str(exc)
    assert refusal.strip(), "a refusal says why"
    return "refused", []


def check(items: list) -> None:
    for total in [item for item in items if isinstance(item, SeatTotal)]:
        assert isinstance(total.total, int)
        assert total.total >= 0
    items = [item for item in items if not isinstance(item, SeatTotal)]  # not lines
    lines = [item.line for item in items]
    assert all(isinstance(n, int) and n >= 1 for n in lines)
    for item in items:
        assert isinstance(item, MetricRow | TeamRow | SeatRow | Rejected), item
        if isinstance(item, Rejected):
            assert item.reason.strip()
        if isinstance(item, MetricRow):
            assert isinstance(item.date, date)
            for value in (item.suggestions, item.acceptances, item.completions, item.sessions):
                assert isinstance(value, int)
                assert 0 <= value < 2**63
            assert item.tool
            assert item.login or item.github_id or item.email or item.api_key_name
            json.dumps(item.extras)  # storable as JSON


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_refused_or_read(data):
    _format, items = read(data)
    check(items)


@FUZZ
@given(documents.flatmap(encodings))
def test_every_format_with_hostile_values(data):
    _format, items = read(data)
    check(items)


def test_a_byte_that_is_not_utf8_while_looking_ahead_refuses_the_file():
    """Found by the fuzz test above: a broken first line makes detection read on, and the
    bad byte came in that look-ahead, past the check of the first line."""
    assert read(b"{\xc2\x80\n\xc2") == ("refused", [])


def test_a_gzip_bomb_is_refused_by_its_decompressed_size():
    bomb = gzip.compress(b"\n" * (LIMIT * 4))
    assert len(bomb) < LIMIT // 50
    fmt, items = read(bomb)
    assert (fmt, items) == ("refused", [])


def test_an_uncompressed_file_over_the_limit_is_refused_before_reading():
    line = b'{"user_login": "mona", "day": "2026-04-01", "code_generation_activity_count": 1}\n'
    at_limit = line * (LIMIT // len(line))
    fmt, items = read(at_limit)
    assert fmt == "copilot_users"
    assert len(items) == LIMIT // len(line)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(at_limit + line)
        refused = pytest.raises(Refused, match=r"larger than 1.0\xa0MB once decompressed")
        with refused, open_metrics_file(path, max_decompressed_bytes=LIMIT):
            pass
