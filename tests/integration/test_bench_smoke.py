"""The Synapse-backed benchmark (`bench.council`) at a tiny scale, so `make test` notices when
it breaks: every figure is there, the roster mirrors every membership change, and `!cases`
for a lead of 384 families reaches them whole."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import council


async def test_council_bench_produces_every_figure(tmp_path: Path) -> None:
    args = argparse.Namespace(rooms=[22], rounds=3, seconds=2.0, due=50, finale=True, members=2,
                              start_only=[24], mirror_rooms=3, visitors=2,
                              json=tmp_path / "council.json")
    results = await council.run(args)
    assert json.loads(args.json.read_text()) == results, "the figures are written as they come"
    step = results["steps"]["22"]
    assert step["rooms"] >= 22
    assert {"first_answer_s", "plain_since_token_sync_s", "plain_no_token_sync_s",
            "cpu_until_answer_s"} <= set(step["start_up"])
    for path in ("floor", "floor_in_every_room", "whois"):
        assert step["latency"][path]["n"] == 3
    for path in ("floor", "floor_in_every_room", "whois"):  # found again in the access log
        assert step["latency"]["legs"][path]["answerer_own"]["n"] > 0
        assert step["latency"]["legs"][path]["answer_send_db_wait"]["n"] > 0
    assert step["concurrency"]["answers"] > 0
    assert step["concurrency"]["cores_used"]["synapse"] > 0
    assert step["concurrency"]["floor"]["round_trips"] > 0
    assert step["concurrency"]["p95_vs_floor"] > 0
    assert step["peak_rss_mb"] > 0
    assert step["no_token_start"]["first_answer_s"] >= step["no_token_start"]["ready_s"] > 0
    assert results["steps"]["24"]["rooms"] == 24
    assert "latency" not in results["steps"]["24"], "a start-up-only step"
    mirrored = results["mirroring"]
    assert mirrored["changes"] == 12
    assert mirrored["roster_matched_s"] > 0
    assert results["cases"]["all_listed"] is True, results["cases"]
    assert results["cases"]["messages"] > 1, "a long answer is split, not lost"
    sweep = results["sweep"]
    assert sweep["swept"] is True, sweep
    assert sweep["during_batches"]["n"] > 0
    assert sweep["background_sent_per_second_unasked"] > 0, "prompts go once nobody asks"
    assert step["latency"]["legs"]["whois"]["answerer_not_waiting"]["n"] > 0
