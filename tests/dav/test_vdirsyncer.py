"""Two-way sync with vdirsyncer: a local folder <-> a staff member's calendar.

Edits on both sides meet: a move made in the folder reschedules the booking,
a new file becomes blocked time, and a booking-side change reaches the folder.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.db import repo
from bridge.db.engine import Database
from bridge.db.models import Appointment, BlockedTime, ChangeEntry
from tests.dav.conftest import LiveServer, StaffLogin, create_appointment

VDIRSYNCER = Path(sys.executable).parent / "vdirsyncer"

NEW_EVENT = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Local//EN\r
BEGIN:VEVENT\r
UID:local-lunch@example.com\r
DTSTAMP:20260101T000000Z\r
DTSTART;VALUE=DATE:20260506\r
DTEND;VALUE=DATE:20260507\r
SUMMARY:Day off\r
X-LOCAL:kept\r
END:VEVENT\r
END:VCALENDAR\r
"""


def sync(config: Path) -> None:
    for command in (["discover"], ["sync"]):
        result = subprocess.run([str(VDIRSYNCER), "-c", str(config), *command],
                                input="y\n" * 5, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def pair(tmp_path: Path, live: LiveServer, anna: StaffLogin) -> tuple[Path, Path]:
    if not VDIRSYNCER.exists() and shutil.which("vdirsyncer") is None:
        pytest.fail("vdirsyncer is a test dependency (pyproject [test])")
    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "vdirsyncer.conf"
    config.write_text(f"""[general]
status_path = "{tmp_path / 'status'}/"

[pair cal]
a = "local"
b = "remote"
collections = null
conflict_resolution = "b wins"

[storage local]
type = "filesystem"
path = "{local}/"
fileext = ".ics"

[storage remote]
type = "caldav"
url = "{live.url}{anna.calendar_path}"
username = "{anna.email}"
password = "{anna.password}"
""")
    return config, local


def test_two_way_sync_reaches_booking_and_folder(
        pair: tuple[Path, Path], anna: StaffLogin, db: Database) -> None:
    config, local = pair
    appt_id = create_appointment(db, anna.company_id, anna.staff_id)
    sync(config)
    (file,) = local.glob("*.ics")
    text = file.read_text()
    assert "SUMMARY:Haircut – Carla Diaz" in text

    # Local side: move the appointment, add a day off.
    moved = (text.replace("DTSTART;TZID=Europe/Paris:20260504T093000",
                          "DTSTART;TZID=Europe/Paris:20260504T140000")
             .replace("DTEND;TZID=Europe/Paris:20260504T103000",
                      "DTEND;TZID=Europe/Paris:20260504T150000"))
    assert moved != text
    file.write_text(moved)
    (local / "day-off.ics").write_text(NEW_EVENT)
    sync(config)

    with db.sync_session() as s:
        appt = s.get(Appointment, appt_id)
        assert appt is not None
        assert appt.start_at == dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)
        entry = s.execute(select(ChangeEntry).where(
            ChangeEntry.type == "appointment.rescheduled")).scalar_one()
        assert (entry.source, entry.actor) == ("caldav", anna.email)
        blocked = s.execute(select(BlockedTime)).scalar_one()
        assert blocked.uid == "local-lunch@example.com" and "X-LOCAL:kept" in blocked.ical

    # Booking side: notes change; the folder gets them on the next sync.
    with db.sync_session(write=True) as s:
        repo.update_appointment(s, anna.company_id, appt_id, {"notes": "Allergic to dye"},
                                repo.Actor("api", "booking"))
    sync(config)
    files = {p.name: p.read_text() for p in local.glob("*.ics")}
    assert len(files) == 2
    (appt_text,) = [t for t in files.values() if "Haircut" in t]
    assert "DESCRIPTION:Allergic to dye" in appt_text
    assert "DTSTART;TZID=Europe/Paris:20260504T140000" in appt_text
    # A second sync with nothing new changes nothing on either side.
    seq_before = _seq(db)
    sync(config)
    assert _seq(db) == seq_before


def _seq(db: Database) -> int:
    with db.sync_session() as s:
        return len(s.execute(select(ChangeEntry.id)).all())
