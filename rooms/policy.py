"""Who may be on a Patchwork team: only users on the operator's allowed homeservers."""

from __future__ import annotations

from collections.abc import Iterable


def server_of(user_id: str) -> str:
    """The server name of a Matrix user id ("@sam:example.org" -> "example.org")."""
    _, _, server = user_id.partition(":")
    return server.lower()


def is_allowed_user(user_id: str, allowed_servers: Iterable[str]) -> bool:
    server = server_of(user_id)
    return bool(server) and server in {name.lower() for name in allowed_servers}
