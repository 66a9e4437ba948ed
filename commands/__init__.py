"""Patchwork's chat commands: the framework (`commands.framework`: registry, parser,
converters, permissions, dispatcher, context) and one module per command, named after it,
each exposing an immutable `COMMANDS` tuple.

`build_registry` is the one place that lists the command modules; the process calls it once at
start-up and hands the registry to the dispatcher.
"""

from __future__ import annotations

from commands import (
    attention,
    audit,
    cases,
    confirm,
    contact,
    export,
    family,
    help,
    invite,
    lead,
    leave,
    role,
    sensitive,
    whois,
)
from commands.framework.registry import Command, CommandRegistry

COMMAND_MODULES = (
    help,
    whois,
    invite,
    role,
    lead,
    contact,
    cases,
    family,
    confirm,
    leave,
    sensitive,
    attention,
    audit,
    export,
)


def build_registry() -> CommandRegistry:
    """A fresh registry holding every command Patchwork offers."""
    registry = CommandRegistry()
    commands: tuple[Command, ...] = tuple(
        item for module in COMMAND_MODULES for item in module.COMMANDS
    )
    for item in commands:
        registry.add(item)
    return registry
