"""Still-involved prompts: one row per involvement per due date, so a prompt is never sent
twice for the same due date, even across restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from storage.codec import encode_time
from storage.errors import NotFoundError
from storage.models import PROMPT_ANSWERS, Prompt, PromptAnswer

if TYPE_CHECKING:
    from storage.transaction import Transaction


class PromptRepository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def create(self, involvement_id: int, due_at: datetime) -> Prompt | None:
        """A new prompt, or None if one already exists for this involvement and due date."""
        prompt_id = await self._tx.insert(
            "INSERT OR IGNORE INTO prompt (involvement_id, due_at) VALUES (?, ?)",
            (involvement_id, encode_time(due_at)),
        )
        return None if prompt_id is None else await self._require(prompt_id)

    async def insert(self, involvement_id: int, due_at: datetime) -> int | None:
        """Like `create`, returning only the new id (None if this due date was already asked),
        without reading the row back: for the bulk sweep."""
        return await self._tx.insert(
            "INSERT OR IGNORE INTO prompt (involvement_id, due_at) VALUES (?, ?)",
            (involvement_id, encode_time(due_at)),
        )

    async def insert_many(self, wanted: Sequence[tuple[int, datetime]]) -> dict[int, int]:
        """`insert` for a batch of (involvement id, due date), one statement per chunk: the
        new prompt id of each involvement not already asked for that due date."""
        rows = await self._tx.insert_rows(
            "INSERT OR IGNORE INTO prompt (involvement_id, due_at)",
            [(involvement_id, encode_time(due_at)) for involvement_id, due_at in wanted],
            returning="id, involvement_id",
        )
        return {int(row["involvement_id"]): int(row["id"]) for row in rows}

    async def delete(self, prompt_id: int) -> bool:
        """Forget a prompt that was never sent, so its involvement can be asked again."""
        return await self._tx.execute("DELETE FROM prompt WHERE id = ?", (prompt_id,)) > 0

    async def get(self, prompt_id: int) -> Prompt | None:
        row = await self._tx.fetchone("SELECT * FROM prompt WHERE id = ?", (prompt_id,))
        return None if row is None else Prompt.from_row(row)

    async def by_event(self, event_id: str) -> Prompt | None:
        """The prompt a reaction or reply refers to."""
        row = await self._tx.fetchone("SELECT * FROM prompt WHERE event_id = ?", (event_id,))
        return None if row is None else Prompt.from_row(row)

    async def open_for(self, involvement_id: int) -> Prompt | None:
        """The latest unanswered prompt for this involvement, if any."""
        row = await self._tx.fetchone(
            "SELECT * FROM prompt WHERE involvement_id = ? AND answered_at IS NULL"
            " ORDER BY due_at DESC, id DESC LIMIT 1",
            (involvement_id,),
        )
        return None if row is None else Prompt.from_row(row)

    async def awaiting_reminder(
        self, *, sent_before: datetime, today: date, after_id: int, limit: int
    ) -> list[Prompt]:
        """Sent, unanswered and not yet reminded prompts of active involvements, by id.

        Only prompts from the involvement's current period count (a re-invited practitioner's
        old question is not chased), and practitioners still away `today` (their `away_until`
        is today or later, in the operator's timezone) are left alone until they are back.
        """
        return await self._open_sent(
            "prompt.reminded_at IS NULL AND prompt.sent_at <= :sent_before",
            {"sent_before": encode_time(sent_before)},
            today=today,
            after_id=after_id,
            limit=limit,
        )

    async def awaiting_lapse(
        self,
        *,
        sent_before: datetime,
        reminded_before: datetime,
        today: date,
        after_id: int,
        limit: int,
    ) -> list[Prompt]:
        """Reminded, still unanswered prompts whose time is up, by id (see awaiting_reminder)."""
        return await self._open_sent(
            "prompt.reminded_at IS NOT NULL AND prompt.reminded_at <= :reminded_before"
            " AND prompt.sent_at <= :sent_before",
            {
                "sent_before": encode_time(sent_before),
                "reminded_before": encode_time(reminded_before),
            },
            today=today,
            after_id=after_id,
            limit=limit,
        )

    async def _open_sent(
        self,
        condition: str,
        params: dict[str, Any],
        *,
        today: date,
        after_id: int,
        limit: int,
    ) -> list[Prompt]:
        """`condition` is constant SQL from this module; every value is a bound parameter."""
        base = (
            "SELECT prompt.* FROM prompt"
            " JOIN involvement ON involvement.id = prompt.involvement_id"
            " JOIN practitioner ON practitioner.user_id = involvement.user_id"
            " WHERE prompt.answered_at IS NULL AND prompt.sent_at IS NOT NULL"
            " AND involvement.status = 'active' AND prompt.due_at >= involvement.started_at"
            " AND (practitioner.away_until IS NULL OR practitioner.away_until < :today)"
            " AND prompt.id > :after_id AND "
        )
        sql = base + condition + " ORDER BY prompt.id LIMIT :limit"
        rows = await self._tx.fetchall(
            sql,
            {
                **params,
                "today": today.isoformat(),
                "after_id": after_id,
                "limit": limit,
            },
        )
        return [Prompt.from_row(row) for row in rows]

    async def mark_sent(self, prompt_id: int, event_id: str) -> Prompt:
        return await self._update(
            prompt_id, "sent_at = ?, event_id = ?", (encode_time(self._tx.now()), event_id)
        )

    async def mark_reminded(self, prompt_id: int) -> Prompt:
        return await self._update(prompt_id, "reminded_at = ?", (encode_time(self._tx.now()),))

    async def mark_reminded_many(self, prompt_ids: Sequence[int]) -> int:
        """`mark_reminded` for a batch, in one statement, without reading the rows back."""
        return await self._tx.execute_in(
            "UPDATE prompt SET reminded_at = ? WHERE id IN ({in_list})",
            prompt_ids,
            leading=(encode_time(self._tx.now()),),
        )

    async def answer(self, prompt_id: int, answer: PromptAnswer) -> bool:
        """Record the answer; False if the prompt was already answered (the first answer wins)."""
        _check_answer(answer)
        changed = await self._tx.execute(
            "UPDATE prompt SET answered_at = ?, answer = ? WHERE id = ? AND answered_at IS NULL",
            (encode_time(self._tx.now()), answer, prompt_id),
        )
        if changed == 0:
            await self._require(prompt_id)
        return changed > 0

    async def answer_many(self, prompt_ids: Iterable[int], answer: PromptAnswer) -> set[int]:
        """`answer` for a batch (a sweep's lapses), one statement per chunk; the ids answered
        now (not those answered before: the first answer wins)."""
        _check_answer(answer)
        rows = await self._tx.fetchall_in(
            "UPDATE prompt SET answered_at = ?, answer = ?"
            " WHERE answered_at IS NULL AND id IN ({in_list}) RETURNING id",
            prompt_ids,
            (encode_time(self._tx.now()), answer),
        )
        return {int(row["id"]) for row in rows}

    async def _update(self, prompt_id: int, assignments: str, params: tuple[Any, ...]) -> Prompt:
        """`assignments` is constant SQL from this module; every value is a bound parameter."""
        changed = await self._tx.execute(
            f"UPDATE prompt SET {assignments} WHERE id = ?",  # noqa: S608
            (*params, prompt_id),
        )
        if changed == 0:
            raise NotFoundError(f"no prompt with id {prompt_id}")
        return await self._require(prompt_id)

    async def _require(self, prompt_id: int) -> Prompt:
        prompt = await self.get(prompt_id)
        if prompt is None:
            raise NotFoundError(f"no prompt with id {prompt_id}")
        return prompt


def _check_answer(answer: str) -> None:
    if answer not in PROMPT_ANSWERS:
        raise ValueError(
            f"unknown answer {answer!r}; expected one of {', '.join(sorted(PROMPT_ANSWERS))}"
        )
