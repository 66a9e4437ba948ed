"""Counting the bot's answers: which command each notice replies to, and how often."""

from __future__ import annotations

from collections import Counter

from nio import RoomMessageNotice


def in_reply_to(notice: RoomMessageNotice) -> str | None:
    relates = notice.source.get("content", {}).get("m.relates_to", {})
    target = relates.get("m.in_reply_to", {}).get("event_id")
    return str(target) if target else None


def reply_counts(notices: list[RoomMessageNotice]) -> Counter[str]:
    """How many bot notices answer each event id (a correct bot answers each exactly once)."""
    return Counter(target for notice in notices if (target := in_reply_to(notice)) is not None)
