"""Still-involved prompts: asking each practitioner at intervals whether they are still on a
family's team, reminding them once, and ending the involvements nobody confirms.

A roster is only worth trusting if it is current, and practitioners move on without telling
anyone. All the state lives in SQLite (`involvement.next_prompt_at` and the `prompt` rows), so
`sweep` can run at any moment, any number of times, and after any crash: the process's
scheduler calls it every `prompts.sweep_every` and once at start-up. Each sweep, only while
working hours are open, does in batches (one transaction each):

1. lapses: reminded prompts still unanswered after `lapse_after` end the involvement as
   `lapsed`, remove the practitioner from the room (if `remove_on_lapse`), tell the lead in the
   room, and report a lapsed lead to the administrators;
2. reminders: prompts unanswered after `remind_after` get one reminder;
3. prompts: involvements whose `next_prompt_at` has come get one question in their family room,
   mentioning the practitioner; those still away (`away_until`) wait until they are back.

Every outbox item's transaction id comes from the prompt (the involvement and its due date), and
the prompt row is unique per due date, so nothing is asked, reminded or removed twice, whatever
is replayed. When the homeserver has accepted a prompt, `on_message_sent` records its event id
and adds the ✅ and ❌ reactions people can tap, in the transaction that marks the send done.

Answers arrive as `!confirm` / `!leave [reason]` (commands.involvement) or as a ✅ / ❌ reaction
to the prompt (`on_reaction`); all go through `confirm` and `leave` here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol

from commands.reply import Markup, Reply, blocks, code, paragraph, text, user
from rooms.actions import kick_user, post_notice
from rooms.policy import TeamPolicy
from storage import (
    BACKGROUND,
    Database,
    Family,
    Involvement,
    OutboxItem,
    Practitioner,
    Prompt,
    Transaction,
    transaction_id,
)

log = logging.getLogger(__name__)

YES = "\N{WHITE HEAVY CHECK MARK}"
NO = "\N{CROSS MARK}"
REACTION_KEYS = (YES, NO)
_VARIATION_SELECTORS = "\ufe0e\ufe0f"
PROMPT_PAYLOAD_KEY = "prompt_id"
"""Marks the outbox item of a prompt, so the sender's hook can record the event it became."""

DEFAULT_BATCH = 200
LAPSE_KICK_REASON = "Did not confirm they are still involved."
LEAVE_KICK_REASON = "Said they are no longer involved."
"""Kick reasons are unencrypted room state: fixed text, never what the practitioner wrote."""


class WorkingSchedule(Protocol):
    """When prompts may go out: `bot.working_hours.WorkingHours` in the operator's zone."""

    @property
    def timezone(self) -> tzinfo: ...

    def is_open(self, at: datetime) -> bool: ...

    def next_open(self, at: datetime) -> datetime: ...


DirectRooms = Callable[[str], str | None]
"""The id of an encrypted one-to-one room the bot shares with a user, if it knows one."""


@dataclass(frozen=True)
class PromptSettings:
    """The operator's `prompts` settings, handed down by the process (rooms never reads config)."""

    interval: timedelta
    remind_after: timedelta
    lapse_after: timedelta
    remove_on_lapse: bool
    schedule: WorkingSchedule
    batch_size: int = DEFAULT_BATCH

    def __post_init__(self) -> None:
        if min(self.interval, self.remind_after) <= timedelta(0):
            raise ValueError("prompt durations must be positive")
        if self.lapse_after <= self.remind_after:
            raise ValueError("lapse_after must be longer than remind_after")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def zone(self) -> tzinfo:
        return self.schedule.timezone

    @property
    def notice_after_reminder(self) -> timedelta:
        """How long a reminded practitioner always has left before the involvement lapses."""
        return self.lapse_after - self.remind_after


# --- scheduling arithmetic ------------------------------------------------------------------


def add_interval(start: datetime, interval: timedelta, zone: tzinfo) -> datetime:
    """`start` plus `interval`, whole days counted on the local calendar, in UTC.

    "Every 8 weeks" from Tuesday 10:00 should be Tuesday 10:00, even when the clocks changed in
    between; adding 56 x 24 hours would land at 09:00 or 11:00. Any part shorter than a day is
    elapsed time. A wall time the clocks skip is moved on by the gap; a repeated one takes its
    first occurrence.
    """
    whole_days = timedelta(days=interval.days)
    wall = start.astimezone(zone).replace(tzinfo=None) + whole_days
    landed = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return landed + (interval - whole_days)


def next_prompt_time(after: datetime, settings: PromptSettings) -> datetime:
    """When to ask next: one interval after `after`, moved into working hours."""
    due = add_interval(after, settings.interval, settings.zone)
    return settings.schedule.next_open(due).astimezone(UTC)


def back_from_away(away_until: date, zone: tzinfo) -> datetime:
    """The first instant after an away date: local midnight as the next day starts."""
    wall = datetime.combine(away_until + timedelta(days=1), time())
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def is_away(practitioner: Practitioner | None, now: datetime, zone: tzinfo) -> bool:
    """Away through the whole of `away_until`, in the operator's timezone."""
    if practitioner is None or practitioner.away_until is None:
        return False
    return now < back_from_away(practitioner.away_until, zone)


def local_today(now: datetime, zone: tzinfo) -> date:
    return now.astimezone(zone).date()


def reminder_due(prompt: Prompt, settings: PromptSettings) -> datetime | None:
    """When an unanswered prompt earns its reminder (None until it has been sent)."""
    return None if prompt.sent_at is None else prompt.sent_at + settings.remind_after


def lapse_due(prompt: Prompt, settings: PromptSettings) -> datetime | None:
    """When an unanswered prompt lapses: `lapse_after` from sending, and never sooner than the
    full notice period after the reminder (which may have waited for working hours, or for the
    bot to be back). None until the reminder has gone out: nobody lapses unreminded."""
    if prompt.sent_at is None or prompt.reminded_at is None:
        return None
    return max(
        prompt.sent_at + settings.lapse_after,
        prompt.reminded_at + settings.notice_after_reminder,
    )


def day(at: datetime, zone: tzinfo) -> str:
    """A local date as people write it ("Mon 3 Aug 2026"); a time would suggest precision."""
    local = at.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y}"


def reaction_answer(key: str) -> bool | None:
    """True for ✅, False for ❌, None for any other reaction (ignored)."""
    bare = key.strip().strip(_VARIATION_SELECTORS)
    if bare == YES:
        return True
    if bare == NO:
        return False
    return None


# --- the sweep -------------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What one sweep did; `queued` says whether the outbox has something new to send."""

    prompted: int = 0
    reminded: int = 0
    lapsed: int = 0
    deferred: int = 0
    skipped: int = 0
    closed_hours: bool = False
    batches: int = 0
    prompted_users: list[str] = field(default_factory=list, repr=False)

    @property
    def queued(self) -> bool:
        return bool(self.prompted or self.reminded or self.lapsed)


async def sweep(
    db: Database,
    settings: PromptSettings,
    policy: TeamPolicy,
    *,
    direct_rooms: DirectRooms | None = None,
) -> SweepReport:
    """Send what has fallen due: lapses, then reminders, then new prompts (module docstring).

    Nothing happens outside working hours; what is due simply waits for the next opening.
    """
    report = SweepReport()
    async with db.read() as tx:
        now = tx.now()
    if not settings.schedule.is_open(now):
        report.closed_hours = True
        return report

    async def lapses(tx: Transaction, after_id: int) -> int:
        return await _lapse_batch(tx, settings, policy, direct_rooms, report, after_id)

    async def reminders(tx: Transaction, after_id: int) -> int:
        return await _reminder_batch(tx, settings, policy, report, after_id)

    await _in_batches(db, lapses, report)
    await _in_batches(db, reminders, report)
    await _prompt_batches(db, settings, policy, report)
    if report.queued or report.deferred:
        log.info(
            "prompt sweep: %d prompted, %d reminded, %d lapsed, %d deferred (away)",
            report.prompted,
            report.reminded,
            report.lapsed,
            report.deferred,
        )
    return report


Batch = Callable[[Transaction, int], Awaitable[int]]
"""Handles up to one batch of rows with ids above the cursor; returns the last id handled
(or the cursor itself when nothing was left)."""


async def _in_batches(db: Database, batch: Batch, report: SweepReport) -> None:
    """Run `batch` in its own transaction until it finds nothing more; the id cursor means
    a row that cannot be handled is passed over instead of being fetched forever."""
    cursor = 0
    while True:
        async with db.transaction() as tx:
            last = await batch(tx, cursor)
        report.batches += 1
        if last == cursor:
            return
        cursor = last


async def _prompt_batches(
    db: Database, settings: PromptSettings, policy: TeamPolicy, report: SweepReport
) -> None:
    """Every handled involvement gets a new `next_prompt_at` (none while its prompt is open,
    or a later one while its practitioner is away), so each batch only sees rows not yet seen."""
    while True:
        async with db.transaction() as tx:
            due = await tx.involvements.due_for_prompt(tx.now(), settings.batch_size)
            await _prompt_batch(tx, due, settings, policy, report)
        report.batches += 1
        if len(due) < settings.batch_size:
            return


@dataclass
class _Loaded:
    """What a batch reads up front, a query per kind rather than a few per row: the
    sweep after a long outage handles thousands of rows, and each query is a thread hop."""

    families: dict[int, Family | None]
    people: dict[str, Practitioner]
    leads: dict[int, Involvement | None] = field(default_factory=dict)

    @classmethod
    async def of(cls, tx: Transaction, involvements: Iterable[Involvement]) -> _Loaded:
        rows = list(involvements)
        families: dict[int, Family | None] = {}
        for family_id in sorted({row.family_id for row in rows}):
            families[family_id] = await tx.families.get(family_id)
        return cls(families, await tx.practitioners.many(row.user_id for row in rows))

    def name(self, user_id: str) -> str | None:
        practitioner = self.people.get(user_id)
        return None if practitioner is None else practitioner.display_name

    async def lead(self, tx: Transaction, family_id: int) -> Involvement | None:
        """The family's lead, read once per batch; a lapse of the lead updates the copy."""
        if family_id not in self.leads:
            self.leads[family_id] = await tx.involvements.lead(family_id)
        return self.leads[family_id]


async def _prompt_batch(
    tx: Transaction,
    due: list[Involvement],
    settings: PromptSettings,
    policy: TeamPolicy,
    report: SweepReport,
) -> None:
    loaded = await _Loaded.of(tx, due)
    now = tx.now()
    cleared: list[int] = []
    audit_rows: list[tuple[int | None, dict[str, object]]] = []
    for involvement in due:
        due_at = involvement.next_prompt_at
        family = loaded.families.get(involvement.family_id)
        if (
            due_at is None
            or family is None
            or not family.is_open
            or family.room_id is None
            or involvement.membership != "join"
        ):
            # Nobody to ask, or nowhere to ask them; a later join schedules a fresh prompt.
            cleared.append(involvement.id)
            report.skipped += 1
            continue
        practitioner = loaded.people.get(involvement.user_id)
        if practitioner is not None and is_away(practitioner, now, settings.zone):
            assert practitioner.away_until is not None
            back = back_from_away(practitioner.away_until, settings.zone)
            opening = settings.schedule.next_open(back).astimezone(UTC)
            await tx.involvements.set_next_prompt(involvement.id, opening)
            report.deferred += 1
            continue
        # No next prompt while this one is open: the answer (or the lapse) decides what follows.
        cleared.append(involvement.id)
        prompt_id = await tx.prompts.insert(involvement.id, due_at)
        if prompt_id is None:
            report.skipped += 1  # already asked for this due date
            continue
        question = _prompt_text(involvement, loaded.name(involvement.user_id), settings)
        await tx.outbox.enqueue(
            prompt_transaction_id(involvement.id, due_at),
            family.room_id,
            "message",
            {
                "type": "m.room.message",
                "content": Reply.from_markup(question).to_content(),
                PROMPT_PAYLOAD_KEY: prompt_id,
            },
            priority=BACKGROUND,
        )
        audit_rows.append(
            (
                family.id,
                {"user": involvement.user_id, "prompt_id": prompt_id, "due_at": _iso(due_at)},
            )
        )
        report.prompted += 1
        report.prompted_users.append(involvement.user_id)
    await tx.involvements.clear_next_prompts(cleared)
    await tx.audit.append_many(policy.bot_user_id, "prompt", audit_rows)


def prompt_transaction_id(involvement_id: int, due_at: datetime) -> str:
    """One per involvement and due date, like the prompt row itself."""
    return transaction_id("prompt", str(involvement_id), due_at.astimezone(UTC).isoformat())


async def _reminder_batch(
    tx: Transaction,
    settings: PromptSettings,
    policy: TeamPolicy,
    report: SweepReport,
    after_id: int,
) -> int:
    now = tx.now()
    prompts = await tx.prompts.awaiting_reminder(
        sent_before=now - settings.remind_after,
        today=local_today(now, settings.zone),
        after_id=after_id,
        limit=settings.batch_size,
    )
    involvements = await tx.involvements.by_ids(prompt.involvement_id for prompt in prompts)
    loaded = await _Loaded.of(tx, involvements.values())
    reminded: list[int] = []
    audit_rows: list[tuple[int | None, dict[str, object]]] = []
    for prompt in prompts:
        involvement = involvements.get(prompt.involvement_id)
        family = None if involvement is None else loaded.families.get(involvement.family_id)
        if involvement is None or family is None or family.room_id is None:
            continue
        deadline = lapse_due(replace(prompt, reminded_at=now), settings)
        assert deadline is not None
        content = Reply.from_markup(
            _reminder_text(
                involvement,
                loaded.name(involvement.user_id),
                settings,
                settings.schedule.next_open(deadline),
            )
        ).to_content()
        if prompt.event_id is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": prompt.event_id}}
        await tx.outbox.enqueue_message(
            transaction_id("prompt", str(prompt.id), "reminder"),
            family.room_id,
            content,
            priority=BACKGROUND,
        )
        reminded.append(prompt.id)
        audit_rows.append((family.id, {"user": involvement.user_id, "prompt_id": prompt.id}))
    await tx.prompts.mark_reminded_many(reminded)
    await tx.audit.append_many(policy.bot_user_id, "prompt_reminder", audit_rows)
    report.reminded += len(reminded)
    return prompts[-1].id if prompts else after_id


async def _lapse_batch(
    tx: Transaction,
    settings: PromptSettings,
    policy: TeamPolicy,
    direct_rooms: DirectRooms | None,
    report: SweepReport,
    after_id: int,
) -> int:
    now = tx.now()
    prompts = await tx.prompts.awaiting_lapse(
        sent_before=now - settings.lapse_after,
        reminded_before=now - settings.notice_after_reminder,
        today=local_today(now, settings.zone),
        after_id=after_id,
        limit=settings.batch_size,
    )
    involvements = await tx.involvements.by_ids(prompt.involvement_id for prompt in prompts)
    loaded = await _Loaded.of(tx, involvements.values())
    audit_rows: list[tuple[int | None, dict[str, object]]] = []
    for prompt in prompts:
        involvement = involvements.get(prompt.involvement_id)
        if involvement is not None and await _lapse_one(
            tx, prompt, involvement, loaded, settings, policy, direct_rooms, audit_rows
        ):
            report.lapsed += 1
    await tx.audit.append_many(policy.bot_user_id, "lapse", audit_rows)
    return prompts[-1].id if prompts else after_id


async def _lapse_one(
    tx: Transaction,
    prompt: Prompt,
    involvement: Involvement,
    loaded: _Loaded,
    settings: PromptSettings,
    policy: TeamPolicy,
    direct_rooms: DirectRooms | None,
    audit_rows: list[tuple[int | None, dict[str, object]]],
) -> bool:
    family = loaded.families.get(involvement.family_id)
    if family is None or family.room_id is None:
        return False
    if not await tx.prompts.answer(prompt.id, "lapsed"):
        return False
    await tx.involvements.end(involvement.id, "lapsed")
    cause = ("prompt", str(prompt.id), "lapse")
    removed = settings.remove_on_lapse and involvement.membership in ("invite", "join")
    lead = await loaded.lead(tx, family.id)
    lead_lapsed = lead is not None and lead.user_id == involvement.user_id
    has_lead = lead is not None and lead.is_active and not lead_lapsed
    if lead_lapsed and lead is not None:
        loaded.leads[family.id] = replace(lead, status="ended")
    audit_rows.append(
        (
            family.id,
            {
                "user": involvement.user_id,
                "prompt_id": prompt.id,
                "removed": removed,
                "was_lead": lead_lapsed,
            },
        )
    )
    who = user(involvement.user_id, loaded.name(involvement.user_id))
    message = who + " did not answer whether they are still involved, so their involvement has "
    message += "lapsed" + (" and I removed them from this room." if removed else ".")
    message += " If they are still involved, invite them again with " + code(
        "!invite @user:server <role>"
    ) + "."
    parts: list[Markup] = []
    if has_lead and lead is not None:
        parts.append(paragraph(await _mention(tx, lead.user_id) + ": " + message))
    else:
        parts.append(paragraph(message))
        parts.append(_admin_request(policy, lead_lapsed))
    # The notice goes before the kick, so the person removed can still read why.
    await post_notice(tx, family.room_id, blocks(*parts), *cause, "notice", priority=BACKGROUND)
    if removed:
        await kick_user(
            tx,
            family.room_id,
            involvement.user_id,
            LAPSE_KICK_REASON,
            *cause,
            "kick",
            priority=BACKGROUND,
        )
    if not has_lead:
        await _report_to_admins(tx, family, who, policy, direct_rooms, cause, lead_lapsed)
    return True


def _admin_request(policy: TeamPolicy, lead_lapsed: bool) -> Markup:
    why = "They were this family's lead" if lead_lapsed else "This family has no active lead"
    request: Markup = text(why + ". ")
    admins = sorted(policy.admins)
    if admins:
        request += "Administrators ("
        for index, admin in enumerate(admins):
            request += (", " if index else "") + user(admin, mention=True)
        request += "): "
    request += "please hand the lead role to another member with " + code("!lead @user:server")
    return paragraph(request + ".")


async def _report_to_admins(
    tx: Transaction,
    family: Family,
    who: Markup,
    policy: TeamPolicy,
    direct_rooms: DirectRooms | None,
    cause: tuple[str, ...],
    lead_lapsed: bool,
) -> None:
    """Besides the mention in the family room (which reaches only admins who are in it), a
    direct message to each administrator the bot already shares an encrypted chat with."""
    if direct_rooms is None:
        return
    what = "the lead of" if lead_lapsed else "a member of"
    for admin in sorted(policy.admins):
        room_id = direct_rooms(admin)
        if room_id is None or await tx.families.by_room(room_id) is not None:
            log.info("no direct chat with administrator %s to report a lapse in", admin)
            continue
        message = paragraph(
            who
            + f" was {what} the team for family "
            + code(family.reference)
            + " and their involvement has lapsed, leaving it without an active lead. Please "
            "hand the lead role to another member with "
            + code("!lead @user:server")
            + " in the room "
            + code(f"Team {family.reference}")
            + "."
        )
        await post_notice(tx, room_id, message, *cause, "admin", admin, priority=BACKGROUND)


# --- after a prompt is sent ------------------------------------------------------------------


async def on_message_sent(tx: Transaction, item: OutboxItem, event_id: str | None) -> None:
    """Called in the transaction that marks an outbox message sent: a prompt's event id is
    recorded (reactions refer to it) and the ✅ and ❌ reactions are queued under it."""
    prompt_id = item.payload.get(PROMPT_PAYLOAD_KEY)
    if not isinstance(prompt_id, int) or not event_id:
        return
    prompt = await tx.prompts.get(prompt_id)
    if prompt is None or prompt.event_id is not None:
        return
    await tx.prompts.mark_sent(prompt_id, event_id)
    for key in REACTION_KEYS:
        await tx.outbox.enqueue_message(
            transaction_id("prompt", str(prompt_id), "reaction", key),
            item.room_id,
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}},
            event_type="m.reaction",
            priority=BACKGROUND,
        )


# --- answers ---------------------------------------------------------------------------------


async def current_prompt(tx: Transaction, involvement: Involvement) -> Prompt | None:
    """The open prompt of this period of involvement (an older period's question is moot)."""
    prompt = await tx.prompts.open_for(involvement.id)
    if prompt is None or prompt.due_at < involvement.started_at:
        return None
    return prompt


async def confirm(
    tx: Transaction,
    involvement: Involvement,
    settings: PromptSettings,
    *,
    via: str,
) -> Involvement:
    """Still involved: answer the open prompt (if any) and ask again one interval from now."""
    prompt = await current_prompt(tx, involvement)
    if prompt is not None:
        await tx.prompts.answer(prompt.id, "yes")
    confirmed = await tx.involvements.confirm(involvement.id, next_prompt_time(tx.now(), settings))
    await tx.audit.append(
        involvement.user_id,
        "confirm",
        family_id=involvement.family_id,
        detail={
            "user": involvement.user_id,
            "via": via,
            "prompt_id": None if prompt is None else prompt.id,
            "next_prompt_at": _iso(confirmed.next_prompt_at),
        },
    )
    return confirmed


async def leave(
    tx: Transaction,
    family: Family,
    involvement: Involvement,
    *,
    reason: str | None,
    via: str,
    cause: str,
    reply_to: str,
) -> None:
    """No longer involved: end the involvement as `left`, answer the open prompt, say goodbye
    in the room (replying to `reply_to`) and then remove them from it. The goodbye is queued
    before the kick so that it is still encrypted for them. `cause` is the event id of the
    answer; the reason goes to the audit trail only, never into room state."""
    prompt = await current_prompt(tx, involvement)
    if prompt is not None:
        await tx.prompts.answer(prompt.id, "no")
    await tx.involvements.end(involvement.id, "left")
    in_room = family.room_id is not None and involvement.membership in ("invite", "join")
    if family.room_id is not None:
        who = user(involvement.user_id, await _name(tx, involvement.user_id))
        content = Reply.from_markup(left_text(who, involvement, in_room)).to_content()
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        await tx.outbox.enqueue_message(
            transaction_id(cause, "leave-notice"), family.room_id, content
        )
        if in_room:
            await kick_user(
                tx, family.room_id, involvement.user_id, LEAVE_KICK_REASON, cause, "leave"
            )
    await tx.audit.append(
        involvement.user_id,
        "leave",
        family_id=family.id,
        detail={
            "user": involvement.user_id,
            "via": via,
            "reason": reason,
            "prompt_id": None if prompt is None else prompt.id,
        },
    )


def confirmed_text(who: Markup, involvement: Involvement, settings: PromptSettings) -> Markup:
    when = involvement.next_prompt_at
    message = "Thank you, " + who + ": you are confirmed as still involved with this family."
    if when is not None:
        message += f" I will ask again on {day(when, settings.zone)}."
    return paragraph(message)


def left_text(who: Markup, involvement: Involvement, removed: bool) -> Markup:
    message = who + " is no longer involved with this family"
    message += " and has left this room." if removed else "."
    message += " Thank you for your work with them."
    if involvement.is_lead:
        message += (
            " They were this family's lead; an administrator can hand the lead role to another "
            "member with " + code("!lead @user:server") + "."
        )
    return paragraph(message)


async def on_reaction(
    tx: Transaction,
    *,
    room_id: str,
    sender: str,
    reacts_to: str,
    key: str,
    event_id: str,
    settings: PromptSettings,
) -> bool:
    """A ✅ or ❌ from the practitioner on their own open prompt answers it; any other reaction,
    or one from someone else, is ignored. True if it was taken as an answer."""
    answer = reaction_answer(key)
    if answer is None:
        return False
    prompt = await tx.prompts.by_event(reacts_to)
    if prompt is None or prompt.answered_at is not None:
        return False
    involvement = await tx.involvements.by_id(prompt.involvement_id)
    if involvement is None or involvement.user_id != sender or not involvement.is_active:
        return False
    family = await tx.families.get(involvement.family_id)
    if family is None or family.room_id != room_id:
        return False
    current = await current_prompt(tx, involvement)
    if current is None or current.id != prompt.id:
        return False
    if not answer:
        await leave(
            tx, family, involvement, reason=None, via="reaction", cause=event_id, reply_to=reacts_to
        )
        return True
    confirmed = await confirm(tx, involvement, settings, via="reaction")
    who = user(sender, await _name(tx, sender))
    content = Reply.from_markup(confirmed_text(who, confirmed, settings)).to_content()
    content["m.relates_to"] = {"m.in_reply_to": {"event_id": reacts_to}}
    await tx.outbox.enqueue_message(transaction_id(event_id, "prompt-answer"), room_id, content)
    return True


# --- wording ---------------------------------------------------------------------------------


def _prompt_text(
    involvement: Involvement, display_name: str | None, settings: PromptSettings
) -> Markup:
    who = user(involvement.user_id, display_name, mention=True)
    if involvement.last_confirmed_at is not None:
        since = f"You last confirmed on {day(involvement.last_confirmed_at, settings.zone)}"
    else:
        since = f"You joined this team on {day(involvement.started_at, settings.zone)}"
    consequence = (
        "your involvement lapses and I remove you from this room"
        if settings.remove_on_lapse
        else "your involvement lapses"
    )
    return blocks(
        paragraph(
            who + ", are you still involved with this family? " + since + ", and the team "
            "relies on this list being right."
        ),
        paragraph(
            f"React {YES} if you are, or {NO} if you are no longer involved. You can also send "
            + code("!confirm")
            + " or "
            + code("!leave [reason]")
            + "."
        ),
        paragraph(
            "If I hear nothing I will remind you once; without an answer "
            f"{_duration(settings.lapse_after)} after this message, {consequence}."
        ),
    )


def _reminder_text(
    involvement: Involvement,
    display_name: str | None,
    settings: PromptSettings,
    deadline: datetime,
) -> Markup:
    who = user(involvement.user_id, display_name, mention=True)
    consequence = (
        "your involvement lapses and I remove you from this room"
        if settings.remove_on_lapse
        else "your involvement lapses"
    )
    return paragraph(
        "A reminder, "
        + who
        + f": are you still involved with this family? React {YES} or {NO} to my question, or "
        "send "
        + code("!confirm")
        + " or "
        + code("!leave [reason]")
        + f". Without an answer by {day(deadline, settings.zone)}, {consequence}."
    )


def _duration(value: timedelta) -> str:
    """Whole weeks or days, as a person would say them."""
    days = value.days
    if days and days % 7 == 0:
        weeks = days // 7
        return f"{weeks} week{'s' * (weeks != 1)}"
    if days:
        return f"{days} day{'s' * (days != 1)}"
    hours = max(1, round(value.total_seconds() / 3600))
    return f"{hours} hour{'s' * (hours != 1)}"


async def _name(tx: Transaction, user_id: str) -> str | None:
    practitioner = await tx.practitioners.get(user_id)
    return None if practitioner is None else practitioner.display_name


async def _mention(tx: Transaction, user_id: str) -> Markup:
    return user(user_id, await _name(tx, user_id), mention=True)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()

