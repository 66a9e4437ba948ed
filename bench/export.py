"""Size and time of `!export` for a family with 12 members and 1,000 audit rows.

Seeds one database, then measures in the same run: reading the rows (the baseline: one
SELECT per table, what any export must do), building the JSON and the readable file, and
encrypting them as nio does before the upload. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from nio.crypto.attachments import encrypt_attachment

from bot.clock import ManualClock
from rooms.exports import build_attachment
from storage import Database

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
KEY = bytes(range(32))


async def seed(path: Path, members: int, audit_rows: int) -> int:
    clock = ManualClock(START)
    async with await Database.open(path, clock=clock, audit_key=KEY) as db:
        async with db.transaction() as tx:
            family = await tx.families.create("LDC-2026-0042", "!room:council.example", "@lead:x")
            for index in range(members):
                user_id = f"@member{index}:council.example"
                await tx.practitioners.ensure(user_id, f"Member {index}")
                await tx.involvements.upsert_membership(family.id, user_id, "join")
                await tx.involvements.set_role(family.id, user_id, "Class teacher")
            rows = [
                (family.id, {"query": None, "shown": [f"@member{i}:council.example"
                                                     for i in range(members)]})
                for _ in range(audit_rows)
            ]
            await tx.audit.append_many("@member0:council.example", "whois", rows)
        return family.id


async def measure(members: int, audit_rows: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.db"
        family_id = await seed(path, members, audit_rows)
        async with await Database.open(path, audit_key=KEY) as db:
            figures: dict[str, list[float]] = {"read": [], "build": [], "encrypt": []}
            sizes: dict[str, int] = {}
            for _ in range(repeat):
                started = time.perf_counter()
                async with db.read() as tx:
                    for table in ("family", "involvement", "audit"):
                        column = "id" if table == "family" else "family_id"
                        await tx.fetchall(
                            f"SELECT * FROM {table} WHERE {column} = ?",  # noqa: S608
                            (family_id,),
                        )
                figures["read"].append(time.perf_counter() - started)
                started = time.perf_counter()
                async with db.read() as tx:
                    files = [
                        await build_attachment(tx, {"family_id": family_id, "format": fmt})
                        for fmt in ("json", "text")
                    ]
                figures["build"].append(time.perf_counter() - started)
                started = time.perf_counter()
                for item in files:
                    encrypt_attachment(item.data)
                figures["encrypt"].append(time.perf_counter() - started)
                sizes = {item.filename.rsplit(".", 1)[1]: len(item.data) for item in files}
    result = {f"{name}_ms": 1000 * min(values) for name, values in figures.items()}
    result.update({f"{name}_bytes": float(size) for name, size in sizes.items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=12)
    parser.add_argument("--audit-rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("build/bench/export.json"))
    args = parser.parse_args()
    result = asyncio.run(measure(args.members, args.audit_rows, args.repeat))
    print(f"export of a family with {args.members} members and {args.audit_rows} audit rows")
    print(f"  baseline: read the rows          {result['read_ms']:8.1f} ms")
    print(f"  build JSON and readable files    {result['build_ms']:8.1f} ms")
    print(f"  encrypt both (AES-CTR, SHA-256)  {result['encrypt_ms']:8.1f} ms")
    print(f"  sizes: JSON {result['json_bytes'] / 1024:.0f} KiB, "
          f"text {result['txt_bytes'] / 1024:.0f} KiB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"  written to {args.json}")


if __name__ == "__main__":
    main()
