"""Patchwork's configuration: one YAML file, checked in full before the bot starts.

Operators are council IT teams, not Python developers, so every problem is reported in one go,
each naming its key path (``prompts.interval``) and what was expected, instead of pydantic's raw
dump. Secrets come from the environment through ``${NAME}`` references so that the file itself
can be kept in version control. All models are frozen: the configuration is read once at start-up
and handed down to whatever needs it.

The package is split by concern: ``models`` holds the section models and their checks,
``prompts`` the prompts section and its working hours, ``section`` their common base,
``loading`` reads the YAML file and fills ``${NAME}`` references, and ``errors`` holds
ConfigError and the wording of validation and YAML errors. Import from ``bot.config`` itself.
"""

from __future__ import annotations

from bot.config.errors import ConfigError
from bot.config.loading import load_config, parse_config
from bot.config.models import (
    BotConfig,
    Config,
    HomeserverConfig,
    LoggingConfig,
    MetricsConfig,
    PolicyConfig,
    StorageConfig,
)
from bot.config.prompts import PromptsConfig, WorkingHoursConfig

__all__ = [
    "BotConfig",
    "Config",
    "ConfigError",
    "HomeserverConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PolicyConfig",
    "PromptsConfig",
    "StorageConfig",
    "WorkingHoursConfig",
    "load_config",
    "parse_config",
]
