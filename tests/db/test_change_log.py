"""The change log, on SQLite and PostgreSQL: every unit of work appends its
entry in the same transaction; sequences are per company, gapless and
ordered; a failed unit of work leaves no entry behind."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.db import repo
from bridge.db.engine import Database
from bridge.db.models import ChangeEntry, Company
from bridge.errors import Invalid

ACTOR = repo.Actor("api", "test")


def entries(db: Database, company_id: int) -> list[ChangeEntry]:
    with db.sync_session() as s:
        return list(s.scalars(select(ChangeEntry).where(ChangeEntry.company_id == company_id)
                              .order_by(ChangeEntry.seq)))


def test_sequences_are_per_company_and_gapless(db: Database) -> None:
    with db.sync_session(write=True) as s:
        a = repo.create_company(s, "a", "A")
        b = repo.create_company(s, "b", "B")
    for i in range(5):
        with db.sync_session(write=True) as s:
            repo.create_group(s, a.id, {"slug": f"g{i}", "name": "G"}, ACTOR)
            if i % 2:
                repo.create_group(s, b.id, {"slug": f"g{i}", "name": "G"}, ACTOR)
    assert [e.seq for e in entries(db, a.id)] == list(range(1, 7))
    assert [e.seq for e in entries(db, b.id)] == [1, 2, 3]
    with db.sync_session() as s:
        assert s.get(Company, a.id).change_seq == 6  # type: ignore[union-attr]


def test_failed_unit_of_work_leaves_no_entry(db: Database) -> None:
    with db.sync_session(write=True) as s:
        company = repo.create_company(s, "a", "A")
    with pytest.raises(Invalid), db.sync_session(write=True) as s:
        repo.create_group(s, company.id, {"slug": "ok", "name": "fine"}, ACTOR)
        repo.create_group(s, company.id, {"slug": "Not OK", "name": "x"}, ACTOR)
    assert [e.type for e in entries(db, company.id)] == ["company.created"]
    with db.sync_session() as s:
        assert repo.list_groups(s, company.id) == []
