"""Cursors are opaque and bound to one company: a property check over many
companies, sequence numbers and tamperings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.changes.service import decode_cursor, encode_cursor, matches
from bridge.errors import SyncTokenInvalid

SECRET = b"s" * 40
ids = st.integers(min_value=1, max_value=2**40)
seqs = st.integers(min_value=0, max_value=2**53)


@given(ids, seqs)
def test_a_cursor_reads_back_for_its_company(company_id: int, seq: int) -> None:
    assert decode_cursor(SECRET, company_id, encode_cursor(SECRET, company_id, seq)) == seq


@given(ids, ids, seqs)
def test_a_cursor_is_refused_by_any_other_company(a: int, b: int, seq: int) -> None:
    if a == b:
        return
    with pytest.raises(SyncTokenInvalid):
        decode_cursor(SECRET, b, encode_cursor(SECRET, a, seq))


@given(ids, seqs, st.integers(min_value=1, max_value=1000))
def test_a_changed_number_is_refused(company_id: int, seq: int, delta: int) -> None:
    _, mac = encode_cursor(SECRET, company_id, seq).split(".")
    with pytest.raises(SyncTokenInvalid):
        decode_cursor(SECRET, company_id, f"{seq + delta}.{mac}")


@given(st.text(max_size=40))
def test_junk_is_refused_not_crashed_on(junk: str) -> None:
    with pytest.raises(SyncTokenInvalid):
        decode_cursor(SECRET, 1, junk)


def test_filters() -> None:
    assert matches(["*"], "appointment.created")
    assert matches(["appointment.*"], "appointment.rescheduled")
    assert not matches(["appointment.*"], "appointments.x")
    assert not matches(["appointment.created"], "appointment.cancelled")
    assert matches(["staff.created", "blocked_time.*"], "blocked_time.deleted")
