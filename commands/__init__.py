"""Patchwork's chat commands: the framework (registry, parser, converters, dispatcher) and one
module per command family, each exposing an immutable `COMMANDS` tuple.

`build_registry` is the one place that lists the command modules; the process calls it once at
start-up and hands the registry to the dispatcher.
"""

from __future__ import annotations

from commands import cases, contact, family, team, whois
from commands import help as help_commands
from commands.registry import CommandRegistry

COMMAND_MODULES = (help_commands, whois, team, contact, cases, family)


def build_registry() -> CommandRegistry:
    """A fresh registry holding every command Patchwork offers."""
    registry = CommandRegistry()
    for module in COMMAND_MODULES:
        for item in module.COMMANDS:
            registry.add(item)
    return registry
