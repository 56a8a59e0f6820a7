"""Pure rules of an appointment: timing, spans, change classification, and
the secrets module (Hypothesis properties where a property says more)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain import appointments as rules
from bridge.domain.secrets import (
    hash_password,
    new_api_key,
    split_api_key,
    token_hash,
    verify_password,
)
from bridge.errors import Invalid

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago",
         "Asia/Kolkata", "Australia/Lord_Howe"]


@given(start=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)),
       minutes=st.integers(min_value=1, max_value=60 * 24 * 30), zone=st.sampled_from(ZONES))
def test_timed_span_is_the_utc_interval(start: dt.datetime, minutes: int, zone: str) -> None:
    from zoneinfo import ZoneInfo

    aware = start.replace(tzinfo=ZoneInfo(zone))
    end = aware + dt.timedelta(minutes=minutes)
    timing = rules.parse_timing(aware.isoformat(), end.isoformat(), False, zone)
    first, last = timing.span()
    assert first == aware.astimezone(dt.UTC)
    assert last == end.astimezone(dt.UTC)
    assert last > first


@given(day=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)),
       days=st.integers(min_value=1, max_value=366), zone=st.sampled_from(ZONES))
def test_all_day_span_covers_the_days_in_every_zone(day: dt.date, days: int, zone: str) -> None:
    from zoneinfo import ZoneInfo

    end = day + dt.timedelta(days=days)
    first, last = rules.parse_timing(day.isoformat(), end.isoformat(), True, zone).span()
    # the local days, seen from any zone on earth, fall inside the stored span
    for tz in ZONES:
        local_start = dt.datetime.combine(day, dt.time(), ZoneInfo(tz)).astimezone(dt.UTC)
        local_end = dt.datetime.combine(end, dt.time(), ZoneInfo(tz)).astimezone(dt.UTC)
        assert first <= local_start and local_end <= last


@pytest.mark.parametrize(("start", "end", "all_day", "field"), [
    ("2026-05-04T10:00:00Z", "2026-05-04T09:00:00Z", False, "end"),
    ("2026-05-04", "2026-05-04", True, "end"),
    ("2026-05-04", "2026-05-05T00:00:00Z", True, "end"),
    ("2026-05-04T10:00:00Z", None, False, "end"),
    (None, "2026-05-04T10:00:00Z", False, "start"),
    ("2026-05-04", "2026-05-05", "yes", "all_day"),
])
def test_bad_timing_names_the_field(start: str, end: str, all_day: bool, field: str) -> None:
    with pytest.raises(Invalid) as err:
        rules.parse_timing(start, end, all_day, "UTC")
    assert err.value.field == field


def test_dst_gap_local_time_is_resolved_by_the_zone() -> None:
    # 02:30 does not exist in Paris on 2026-03-29; zoneinfo maps it forward (fold=0: +01:00)
    timing = rules.parse_timing("2026-03-29T02:30:00", "2026-03-29T04:00:00", False, "Europe/Paris")
    assert timing.start_at == dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)


def test_classify_change() -> None:
    before = {"start": "a", "end": "b", "status": "confirmed", "notes": ""}
    assert rules.classify_change(before, {**before, "start": "c"})[0] == "appointment.rescheduled"
    assert rules.classify_change(before, {**before, "status": "cancelled", "start": "c"})[0] == \
        "appointment.cancelled"
    kind, fields = rules.classify_change(before, {**before, "notes": "x"})
    assert (kind, fields) == ("appointment.updated", ["notes"])


def test_passwords_hash_slowly_and_verify() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$")
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsf", stored)
    assert not verify_password("x", "garbage")
    assert hash_password("same") != hash_password("same")  # salted


@given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64))
def test_token_hash_depends_on_the_server_secret(a: bytes, b: bytes) -> None:
    if a != b:
        assert token_hash("token", a) != token_hash("token", b)


def test_api_keys_are_long_random_and_parseable() -> None:
    keys = {new_api_key()[1] for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        prefix = split_api_key(key)
        assert prefix is not None and key.startswith(f"cbk_{prefix}_")
        assert len(key.split("_", 2)[2]) >= 43  # 256 bits, base64url
    assert split_api_key("cbk_short_x") is None
    assert split_api_key("nope") is None
