"""`patchwork audit verify`, `patchwork practitioner erase` and `patchwork roster export`,
run through the real command line against a database the bot would use."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from bot.auditkey import load_audit_key
from bot.cli import main
from storage import Database
from tests.unit.test_cli import _write_config

LEAD = "@lead:example.org"
SAM = "@sam:example.org"


async def _seed(data: Path) -> None:
    key = load_audit_key(data, create=True)
    async with await Database.open(data / "patchwork.db", audit_key=key) as db:
        async with db.transaction() as tx:
            family = await tx.families.create("LDC-2026-0042", "!room:example.org", LEAD)
            for user_id in (LEAD, SAM):
                await tx.practitioners.ensure(user_id, "Sam Smith" if user_id == SAM else None)
                await tx.involvements.upsert_membership(family.id, user_id, "join")
            await tx.practitioners.update_contact(SAM, phone="+442079460555")
            await tx.audit.append(SAM, "whois", family_id=family.id, detail={"user": SAM})
            await tx.audit.append(LEAD, "invite", family_id=family.id, detail={"user": SAM})


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = _write_config(tmp_path)
    (tmp_path / "data").mkdir(mode=0o700)
    asyncio.run(_seed(tmp_path / "data"))
    return path


def test_verify_passes_then_names_the_row_changed_by_hand(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert "audit chain intact: 2 rows" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "data" / "patchwork.db") as conn:
        conn.execute("DROP TRIGGER audit_redact_only")
        conn.execute("UPDATE audit SET actor = '@mallory:example.org' WHERE id = 2")
    assert main(["audit", "verify", "--config", str(config)]) == 1
    assert "audit chain BROKEN at row 2" in capsys.readouterr().err


def test_verify_without_the_key_says_what_to_do(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data" / "audit_hmac.key").unlink()
    assert main(["audit", "verify", "--config", str(config)]) == 2
    assert "restore it from your backup" in capsys.readouterr().err


def test_erase_is_refused_while_involved_then_leaves_a_pseudonym(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["practitioner", "erase", SAM, "--config", str(config)]) == 1
    assert "still involved with 1 families (LDC-2026-0042)" in capsys.readouterr().err
    with sqlite3.connect(tmp_path / "data" / "patchwork.db") as conn:
        conn.execute("UPDATE involvement SET status = 'ended', end_reason = 'left'")
    assert main(["practitioner", "erase", SAM, "--config", str(config)]) == 0
    assert "2 audit rows now name them as pseudonym:" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "data" / "patchwork.db") as conn:
        person = conn.execute(
            "SELECT display_name, phone, share_contact FROM practitioner WHERE user_id = ?", (SAM,)
        ).fetchone()
        audit = conn.execute("SELECT actor, detail FROM audit").fetchall()
    assert person == (None, None, 0)
    assert SAM not in json.dumps(audit)
    assert main(["audit", "verify", "--config", str(config)]) == 0


def test_roster_export_as_csv_and_json(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["roster", "export", "--config", str(config), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(row["reference"], row["user_id"], row["status"]) for row in rows] == [
        ("LDC-2026-0042", LEAD, "active"),
        ("LDC-2026-0042", SAM, "active"),
    ]
    assert main(["roster", "export", "--config", str(config), "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert [row["user_id"] for row in exported] == [LEAD, SAM]
    assert "phone" not in exported[0], "the roster holds who is involved, not contact details"
    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert "4 rows" in capsys.readouterr().out, "both exports were audited"
