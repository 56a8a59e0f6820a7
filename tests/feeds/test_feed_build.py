"""Applying changes to a cached feed gives the bytes a full rebuild gives.

After each kind of change, the feed assembled from the previous one plus
the changed rows must equal the feed built from scratch, on SQLite and
PostgreSQL; changes that are not appointment rows rebuild from scratch.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bridge.db import repo
from bridge.feeds import service
from tests.feeds.conftest import ADMIN, TODAY, Salon, at, weekly_block

KW: dict[str, Any] = {"today": TODAY, "days_back": 60, "days_ahead": 400,
                      "refresh_minutes": 15, "warn_bytes": 10**9}


def version(salon: Salon) -> int:
    with salon.db.sync_session() as s:
        return repo.company_version(s, salon.tenant.company_id)


def full(salon: Salon, link_id: int) -> service.FeedBody:
    with salon.db.sync_session() as s:
        return service.build_feed(s, link_id, **KW)


def delta(salon: Salon, link_id: int, previous: service.FeedBody, since: int) -> service.FeedBody:
    with salon.db.sync_session() as s:
        return service.build_feed(s, link_id, previous=previous, since=since, **KW)


def test_changes_applied_to_a_cached_feed_match_a_full_rebuild(salon: Salon) -> None:
    for n in range(6):
        salon.book(f"a{n}", salon.anna, n + 1, 9 + n)
        salon.book(f"b{n}", salon.ben, n + 1, 9 + n)
    salon.book("c", salon.chloe, 2, 10)
    links = [salon.link(staff_id=salon.anna)[0], salon.link(group_id=salon.group)[0],
             salon.link(scope="company", privacy="limited")[0]]
    text, first, last = weekly_block()
    salon.block(salon.ben, text, first, last)

    def moved_to_ben() -> None:
        salon.update("a1", {"staff_id": salon.ben})

    def moved_to_chloe() -> None:
        salon.update("b1", {"staff_id": salon.chloe})

    def new_booking() -> None:
        salon.book("new", salon.anna, 3, 8)

    steps = [
        lambda: salon.update("a0", {"start": at(9, 15), "end": at(9, 16)}),  # reorders
        lambda: salon.update("a2", {"status": "cancelled"}),
        lambda: salon.update("b3", {"start": at(500, 10), "end": at(500, 11)}),  # leaves window
        lambda: salon.update("a3", {"notes": "new notes; with, punctuation"}),
        moved_to_ben, moved_to_chloe, new_booking,
        lambda: salon.update("a2", {"status": "confirmed"}),  # comes back
    ]
    bodies = {link: full(salon, link) for link in links}
    seen = version(salon)
    for step in steps:
        step()
        for link in links:
            incremental = delta(salon, link, bodies[link], seen)
            fresh = full(salon, link)
            assert incremental.body == fresh.body
            assert incremental.etag == fresh.etag
            bodies[link] = incremental
        seen = version(salon)


def test_other_changes_rebuild_from_scratch(salon: Salon) -> None:
    salon.book("a", salon.anna, 1, 10)
    link, _ = salon.link(group_id=salon.group)
    before = full(salon, link)
    seen = version(salon)
    with salon.db.sync_session(write=True) as s:
        repo.update_staff(s, salon.tenant.company_id, salon.anna, {"name": "Anna Schmidt"}, ADMIN)
        repo.add_member(s, salon.tenant.company_id, salon.group, salon.chloe, ADMIN)
    salon.book("c", salon.chloe, 1, 11)
    after = delta(salon, link, before, seen)
    assert after.body == full(salon, link).body
    assert b"Anna Schmidt: Haircut" in after.body
    assert "Chloé Durand: Haircut".encode() in after.body
    text, first, last = weekly_block(start_days=-1)
    seen = version(salon)
    salon.block(salon.anna, text, first, last)
    with_block = delta(salon, link, after, seen)
    assert with_block.body == full(salon, link).body
    assert with_block.body.count(b"SUMMARY:Busy") == 1
    assert (with_block.modified - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
