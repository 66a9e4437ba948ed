"""Reading the configuration: the YAML file, ``${NAME}`` references and the full check.

load_config reads the file with a stricter YAML loader (duplicate keys are errors, times of day
stay text) and hands the settings to parse_config, which fills ``${NAME}`` references from the
environment and validates everything against the models, raising one ConfigError that lists
every problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.config.errors import (
    ConfigError,
    Loc,
    _describe_validation_error,
    _describe_yaml_error,
    _key_path,
    _kind,
)
from bot.config.models import Config

_ENV_REFERENCE_RE = re.compile(r"\$(?P<escaped>\$?)\{(?P<name>[^{}]*)\}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNCLOSED_REFERENCE_RE = re.compile(r"\$\{(?![^{}]*\})")


def load_config(path: Path) -> Config:
    """Read and check the YAML file; relative paths inside it are relative to its folder."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, ["the file is not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_describe_yaml_error(exc)]) from None
    if data is None:
        raise ConfigError(
            source,
            ["the file is empty (expected the sections homeserver, bot, storage and policy)"],
        )
    if not isinstance(data, Mapping):
        raise ConfigError(
            source,
            [f"the file should hold sections of settings (key: value lines), not {_kind(data)}"],
        )
    return parse_config(data, source=source, environ=None, base_dir=path.parent)


def parse_config(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Check already-loaded settings; ${NAME} references are filled from environ (os.environ).

    Relative storage paths are resolved against base_dir (the current folder if not given).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(source, [f"the settings should be a mapping, not {_kind(data)}"])
    env_problems: dict[Loc, str] = {}
    filled = _substitute(data, os.environ if environ is None else environ, (), env_problems)
    config: Config | None = None
    found: list[tuple[Loc, str]] = []
    try:
        config = Config.model_validate(filled, context={"base_dir": base_dir})
    except ValidationError as exc:
        found = _describe_validation_error(exc, Config)
    problems = [f"{_key_path(loc)}: {message}" for loc, message in env_problems.items()]
    problems += [
        f"{_key_path(loc)}: {message}"
        for loc, message in found
        # A key whose variable is missing would only add a confusing second complaint.
        if not any(loc[: len(bad)] == bad for bad in env_problems)
    ]
    if problems or config is None:
        raise ConfigError(source, problems)
    return config


def _substitute(value: Any, environ: Mapping[str, str], loc: Loc, problems: dict[Loc, str]) -> Any:
    """Fill ${NAME} references in every string; $${NAME} stands for a literal ${NAME}."""
    if isinstance(value, Mapping):
        return {
            key: _substitute(item, environ, (*loc, str(key)), problems)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            _substitute(item, environ, (*loc, index), problems) for index, item in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if match["escaped"]:
            return "${" + name + "}"
        if not _ENV_NAME_RE.fullmatch(name):
            problems.setdefault(
                loc,
                f"{match[0]!r} is not a valid environment variable reference "
                "(expected ${NAME} with letters, digits and underscores)",
            )
            return ""
        if name not in environ:
            problems.setdefault(
                loc,
                f"the environment variable {name} is not set "
                "(expected it to hold this value when the bot starts)",
            )
            return ""
        return environ[name]

    if _UNCLOSED_REFERENCE_RE.search(value):
        problems.setdefault(
            loc, "has a ${ without its closing } (expected ${NAME} to read an environment variable)"
        )
        return value
    return _ENV_REFERENCE_RE.sub(fill, value)


class _ConfigLoader(yaml.SafeLoader):
    """YAML as operators expect it: duplicate keys are errors and 9:30 stays text.

    Plain YAML 1.1 silently keeps the last of two identical keys and reads 17:30 as the
    base-60 number 1050, both of which would turn a typo into a wrong setting.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a section",
                        node.start_mark,
                        f"the key {key_node.value!r} appears twice",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_ConfigLoader.yaml_implicit_resolvers = {
    first: [
        (tag, re.compile(r"(?![^:]*:)" + pattern.pattern, pattern.flags))
        if tag in _NUMBER_TAGS
        else (tag, pattern)
        for tag, pattern in resolvers
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
