"""Patchwork's chat commands: the framework (registry, parser, converters, dispatcher) and one
module per command family, each exposing an immutable `COMMANDS` tuple.

`build_registry` is the one place that lists the command modules; the process calls it once at
start-up and hands the registry to the dispatcher.
"""

from __future__ import annotations

import importlib

from commands.registry import CommandRegistry

# Imported when the registry is built, not when the package is: the command modules use
# `rooms`, which formats its notices with `commands.reply`, so importing them here would make
# `import commands.reply` depend on `rooms` being importable first.
COMMAND_MODULES = (
    "commands.help",
    "commands.whois",
    "commands.team",
    "commands.contact",
    "commands.cases",
    "commands.family",
    "commands.involvement",
)


def build_registry() -> CommandRegistry:
    """A fresh registry holding every command Patchwork offers."""
    registry = CommandRegistry()
    for name in COMMAND_MODULES:
        for item in importlib.import_module(name).COMMANDS:
            registry.add(item)
    return registry
