"""The configuration as the lower layers take it: `rooms` and `commands` never read the
configuration themselves; the process builds these once at start-up and hands them down."""

from __future__ import annotations

import re

from bot.config import Config
from rooms.policy import TeamPolicy
from rooms.prompts import PromptSettings


def team_policy(config: Config, bot_user_id: str) -> TeamPolicy:
    return TeamPolicy(
        bot_user_id=bot_user_id,
        allowed_servers=frozenset(config.policy.allowed_servers),
        family_servers=frozenset(config.policy.family_servers),
        admins=frozenset(config.policy.admins),
        family_creators=config.policy.family_creators,
        prompt_interval=config.prompts.interval,
        timezone=config.prompts.working_schedule.timezone,
        reference_pattern=re.compile(config.policy.reference_pattern),
        closed_case_retention=config.retention.closed_case,
    )


def prompt_settings(config: Config) -> PromptSettings:
    prompts = config.prompts
    return PromptSettings(
        interval=prompts.interval,
        remind_after=prompts.remind_after,
        lapse_after=prompts.lapse_after,
        remove_on_lapse=prompts.remove_on_lapse,
        schedule=prompts.working_schedule,
    )
