"""The one error `rooms` raises for a request the team rules refuse.

It carries a message written for the person who asked, so the command layer can show it as is
(converting it to its own user-input error) without `rooms` depending on the command framework.
"""

from __future__ import annotations

from markup import Markup, text


class TeamRuleError(Exception):
    """A request the team rules refuse; `markup` says why, in the user's terms."""

    def __init__(self, message: Markup | str) -> None:
        self.markup = message if isinstance(message, Markup) else text(message)
        super().__init__(self.markup.body)
