"""The offline benchmarks, run at a tiny scale so `make test` notices when one breaks: each
produces every figure it promises, and the sweep leaves an intact audit chain."""

from __future__ import annotations

from bench import command_cost, export, prompt_sweep


async def test_command_cost_explains_every_stage() -> None:
    result = await command_cost.run(families=20, days=30, rounds=3)
    for label in ("baseline", "council"):
        figures = result[label]
        assert set(figures["median_ms"]) == set(command_cost.STAGES)
        assert all(value > 0 for value in figures["median_ms"].values())
        assert figures["audit_intact"] is True
        # BEGIN with the inbox check, the room's family, its team and the team's people;
        # then the COMMIT, carrying the audit row (the chain's end read and the link made on
        # the database thread), the reply, the sync token and the read of the reply as due.
        assert figures["trips"]["transaction"] == 2
        # The reply's lane leaves for the homeserver with no trip of its own; then the
        # "sent" transaction, with its COMMIT.
        assert figures["trips"]["hand-off"] == 0
        assert figures["trips"]["sent mark"] <= 2
        assert figures["path_ms"] < figures["total_ms"]
    assert result["council"]["rows"]["audit"] > 0, "the council database has history"


async def test_prompt_sweep_reports_wall_and_database_time() -> None:
    result = await prompt_sweep.run(families=20, members=2)
    assert result["involvements"] == 40
    assert result["audit_chain_intact"] is True
    for key in ("baseline", "first", "idle", "reminders", "lapses", "notices"):
        figures = result[key]
        assert isinstance(figures, dict)
        assert figures["wall_ms"] >= figures["database_ms"] > 0
    # A lapse's notice names its prompt and its kick its target: no text waits in the queue.
    assert result["lapses"]["outbox_bytes"] < 300 * 40


async def test_export_bench_measures_each_step() -> None:
    result = await export.measure(members=3, audit_rows=20, repeat=1)
    assert {"read_ms", "build_ms", "encrypt_ms", "json_bytes", "txt_bytes"} <= set(result)
