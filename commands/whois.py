"""`!whois`: who else is on this family's team and how to reach them.

Need-to-know by design: contact details appear only for practitioners who agreed to share
them, sensitive involvements (a domestic-violence service, say) are hidden except from the
lead, administrators and the practitioner themselves, and every look-up is audited with its
query (never with what was shown about anyone's contact details).
"""

from __future__ import annotations

from dataclasses import dataclass

from commands.contact import phone_link
from commands.framework.context import CommandContext
from commands.framework.converters import Rest, Text
from commands.framework.registry import FAMILY_ROOM, Command, command
from commands.shared import (
    current_family,
    display_name,
    lead_or_admin,
    person,
    tell_in_direct_chat,
)
from markup import (
    MATRIX_TO,
    Markup,
    blocks,
    bold,
    bullet_list,
    code,
    day,
    lines,
    paragraph,
    text,
    user,
)
from rooms.admission import is_on_team
from rooms.policy import server_of
from storage import Involvement, Practitioner

QUERY_LIMIT = 100


@dataclass(frozen=True)
class Member:
    """One visible team member and what we know about them."""

    involvement: Involvement
    practitioner: Practitioner | None
    name: str | None

    @property
    def user_id(self) -> str:
        return self.involvement.user_id

    def pill(self) -> Markup:
        return user(self.user_id, self.name)

    def matches(self, query: str) -> bool:
        """By @user id (a localpart prefix is enough), or by part of a name, role or employer."""
        wanted = query.strip().removeprefix(MATRIX_TO).casefold()
        if wanted.startswith("@"):
            if ":" in wanted:
                return self.user_id.casefold() == wanted
            localpart = self.user_id[1:].partition(":")[0].casefold()
            return localpart.startswith(wanted[1:])
        practitioner = self.practitioner
        fields = [self.name, self.involvement.role]
        if practitioner is not None:
            fields += [practitioner.display_name, practitioner.job_title, practitioner.organisation]
        return any(wanted in field.casefold() for field in fields if field)


@command(
    "whois",
    summary="See who is on this family's team and how to reach them.",
    description=(
        "Send !whois alone for the whole team, or add a name, an @user id or a role, like "
        "!whois teacher, for one person's card. Phone numbers and email addresses are shown "
        "only for people who agreed to share them. Every look-up is recorded, and the lead "
        "can see who looked."
    ),
    where=FAMILY_ROOM,
    converters={"query": Text(label="name, @user or role", max_length=QUERY_LIMIT)},
    shows_team=True,
)
async def whois(ctx: CommandContext, query: Rest[str] | None = None) -> None:
    tx = ctx.tx
    family = await current_family(ctx)
    members = await _members(ctx, family.id)
    on_team = is_on_team(await tx.involvements.get(family.id, ctx.sender))
    if not on_team and not ctx.is_admin:
        # Refused look-ups are audited too, so the reply is given here, not raised (an error
        # would roll the audit row back with the rest of the command).
        tx.audit.append_later(ctx.sender, "whois_refused", family_id=family.id)
        ctx.reply(
            "Only members of this family's team can see who is on it and how to reach them. "
            "If you should be on the team, ask its lead to invite you."
        )
        return
    privileged = await lead_or_admin(ctx)
    if query is not None:
        members = [member for member in members if member.matches(query)]
    # The answer is posted to the room, which everyone reads: sensitive involvements never
    # appear in it. Those the asker may see go to their direct chat with the bot.
    shown = [member for member in members if not member.involvement.sensitive]
    private = [
        member
        for member in members
        if member.involvement.sensitive and (privileged or member.user_id == ctx.sender)
    ]
    hidden = any(member.involvement.sensitive for member in members)
    detail: dict[str, object] = {
        "query": query,
        "shown": [member.user_id for member in shown],
        "shown_privately": [member.user_id for member in private],
    }
    if not on_team:
        detail["as_admin"] = True
    tx.audit.append_later(ctx.sender, "whois", family_id=family.id, detail=detail)
    notes = [await _confidential_note(ctx, family.id)] if hidden and query is None else []
    if private:
        notes.append(await _send_privately(ctx, family.reference, private, privileged))
    if query is None:
        ctx.reply(blocks(_team(family.reference, shown, privileged, ctx.prefix), *notes))
    elif not shown:
        ctx.reply(
            blocks(
                paragraph(
                    "Nobody on this team matches "
                    + code(query)
                    + ". Send "
                    + code(f"{ctx.prefix}whois")
                    + " to see the whole team."
                )
                if not private
                else Markup(),
                *notes,
            )
        )
    elif len(shown) == 1:
        ctx.reply(blocks(_card(shown[0], privileged), *notes))
    else:
        ctx.reply(
            blocks(
                paragraph(f"{len(shown)} people on this team match " + code(query) + ":"),
                bullet_list(member.pill() + _role_text(member) for member in shown),
                paragraph(
                    "Send "
                    + code(f"{ctx.prefix}whois @user:server")
                    + " with one of their ids for their card."
                ),
                *notes,
            )
        )


async def _confidential_note(ctx: CommandContext, family_id: int) -> Markup:
    """What everyone may know of sensitive involvements: that there is one, and who to ask."""
    lead = await ctx.tx.involvements.lead(family_id)
    who = (
        text("the lead")
        if lead is None or lead.user_id == ctx.sender
        else "the lead, " + await person(ctx, lead.user_id) + ","
    )
    return paragraph(
        "A confidential service is also involved with this family; "
        + who
        + " can put you in touch."
    )


async def _send_privately(
    ctx: CommandContext, reference: str, private: list[Member], privileged: bool
) -> Markup:
    """Queue the sensitive members the asker may see to their direct chat; say where it went."""
    message = blocks(
        paragraph(f"Confidential involvements in {reference}, shown only to you:"),
        bullet_list(
            _join([member.pill(), *_facts(member, privileged), *_contact(member)])
            for member in private
        ),
    )
    if not await tell_in_direct_chat(ctx, ctx.sender, message, "whois-private"):
        return paragraph(
            "Confidential involvements you may see are not shown here. Start a direct chat "
            "with me and ask again, and I will send them to you there."
        )
    return paragraph("I have sent the confidential involvements you may see to our direct chat.")


async def _members(ctx: CommandContext, family_id: int) -> list[Member]:
    """The active team, sensitive involvements included (the caller decides who sees them)."""
    active, people = await ctx.tx.involvements.with_practitioners(family_id)  # in one trip
    members: list[Member] = []
    for involvement in filter(is_on_team, active):
        practitioner = people.get(involvement.user_id)
        name = await display_name(ctx, involvement.user_id, practitioner)
        members.append(Member(involvement, practitioner, name))
    return members


def _role_text(member: Member) -> Markup:
    role = member.involvement.role
    return Markup() if role is None else text(" — " + role)


def _facts(member: Member, privileged: bool) -> list[Markup]:
    """Role, employer, homeserver, lead, status and confirmation, in the order people scan
    for them."""
    involvement = member.involvement
    practitioner = member.practitioner
    facts: list[Markup] = [text(involvement.role or "role not given yet")]
    if practitioner is not None and (practitioner.organisation or practitioner.job_title):
        work = ", ".join(
            part for part in (practitioner.job_title, practitioner.organisation) if part
        )
        facts.append(text(work))
    facts.append(text("account on " + server_of(involvement.user_id)))
    if involvement.is_lead:
        facts.append(bold("lead"))
    if involvement.membership == "invite":
        facts.append(text("invited, not joined yet"))
    if involvement.last_confirmed_at is not None:
        facts.append(text(f"last confirmed {day(involvement.last_confirmed_at)}"))
    else:
        facts.append(text(f"on the team since {day(involvement.started_at)}, not confirmed yet"))
    if practitioner is not None and practitioner.away_until is not None:
        away = practitioner.away_until
        facts.append(text(f"away until {day(away)}"))
    if involvement.sensitive and privileged:
        facts.append(text("sensitive: hidden from ordinary look-ups"))
    return facts


def _contact(member: Member) -> list[Markup]:
    """Phone and email, only with the practitioner's consent."""
    practitioner = member.practitioner
    if practitioner is None or not practitioner.share_contact:
        return []
    found: list[Markup] = []
    if practitioner.phone:
        found.append("phone " + phone_link(practitioner))
    if practitioner.email:
        found.append("email " + code(practitioner.email))
    return found


def _join(parts: list[Markup], separator: str = " · ") -> Markup:
    """The parts with `separator` between them, built in one pass (a team of twelve has some
    ninety parts; adding them one by one copied the growing text each time)."""
    between = text(separator)
    return Markup(
        between.body.join(part.body for part in parts),
        between.html.join(part.html for part in parts),
        tuple(dict.fromkeys(user_id for part in parts for user_id in part.mentions)),
    )


def _team(reference: str, members: list[Member], privileged: bool, prefix: str) -> Markup:
    if not members:
        return paragraph(f"Nobody is on the team for {reference} yet.")
    entries = [
        _join([member.pill(), *_facts(member, privileged), *_contact(member)])
        for member in members
    ]
    return blocks(
        paragraph(f"The team for {reference} ({len(members)}):"),
        bullet_list(entries),
        paragraph(
            "Contact details are shown only for people who share them. Send "
            + code(f"{prefix}whois <name, @user or role>")
            + " for one person's card."
        ),
    )


def _card(member: Member, privileged: bool) -> Markup:
    contact = _contact(member)
    practitioner = member.practitioner
    if not contact and (practitioner is None or not practitioner.share_contact):
        contact_line = text("contact details not shared")
    elif not contact:
        contact_line = text("no contact details given")
    else:
        contact_line = _join(contact)
    return paragraph(lines(bold(member.pill()), _join(_facts(member, privileged)), contact_line))


COMMANDS: tuple[Command, ...] = (whois,)
