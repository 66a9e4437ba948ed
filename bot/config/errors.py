"""Configuration errors and how they are worded for operators.

ConfigError carries every problem found in a configuration file at once. The helpers here turn
pydantic's validation errors and PyYAML's parse errors into one line each, naming the key path
(``prompts.interval``) and what was expected. Nothing here knows the configuration's models: the
formatting of validation errors is handed the root model to look fields and sections up in.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

Loc = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration cannot be used; problems lists every reason, one per key."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(source, self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        heading = f"The configuration in {self.source} has {count} problem{'s' * (count != 1)}:"
        return "\n".join([heading, *(f"  - {problem}" for problem in self.problems)])


class _KeyProblem(ValueError):
    """Raised by a section's own checks to blame one of its keys rather than the whole section."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _describe_validation_error(
    exc: ValidationError, root: type[BaseModel]
) -> list[tuple[Loc, str]]:
    """Each of exc's errors as (key path, message); root is the model that was validated."""
    described: list[tuple[Loc, str]] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, _KeyProblem):
            loc = (*loc, cause.key)
        described.append((loc, _describe_error(root, loc, error["type"], error["input"], ctx)))
    return described


def _describe_error(
    root: type[BaseModel], loc: Loc, kind: str, value: Any, ctx: Mapping[str, Any]
) -> str:
    """Turn one pydantic error into 'what is wrong (expected ...)'."""
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", "is not valid"))
    if kind == "extra_forbidden":
        return _unknown_key(root, loc)
    problem = _problem_text(kind, value, ctx)
    field = _field_at(root, loc)
    if field is not None and field.description and not isinstance(loc[-1], int):
        return f"{problem} (expected {field.description})"
    return problem


def _problem_text(kind: str, value: Any, ctx: Mapping[str, Any]) -> str:
    if kind == "missing":
        return "is missing"
    if value is None:
        return "has no value"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"should be a section of settings (key: value lines), not {_kind(value)}"
    if kind in ("string_type", "path_type"):
        return f"should be text, not {_kind(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"should be a whole number, not {_kind(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{value!r} is not true or false"
    if kind in ("list_type", "tuple_type", "set_type", "iterable_type"):
        return f"should be a list, not {_kind(value)}"
    if kind == "literal_error":
        return f"{value!r} is not one of the choices"
    if kind == "greater_than_equal":
        return f"{value!r} is too small"
    if kind == "less_than_equal":
        return f"{value!r} is too large"
    if kind in ("string_too_short", "too_short"):
        return "is empty"
    return f"is not valid ({kind})"


def _unknown_key(root: type[BaseModel], loc: Loc) -> str:
    model = _model_at(root, loc[:-1])
    known = list(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean {_key_path((*loc[:-1], close[0]))}? " if close else ""
    return f"is not a known setting ({hint}expected one of: {', '.join(known)})"


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _section_type(model.model_fields[part])
    return model


def _field_at(root: type[BaseModel], loc: Loc) -> FieldInfo | None:
    names = [part for part in loc if isinstance(part, str)]
    if not names:
        return None
    parent = _model_at(root, tuple(names[:-1]))
    if parent is None:
        return None
    return parent.model_fields.get(names[-1])


def _section_type(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _key_path(loc: Loc) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(top level)"


def _kind(value: Any) -> str:
    """Name a YAML value's type the way an operator would."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "a section"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"the file is not valid YAML: {exc}"
    mark = exc.problem_mark
    problem = exc.problem or "cannot be read"
    hint = ""
    if "'@'" in problem or "'`'" in problem:
        hint = " (values starting with @, such as Matrix user ids, must be in quotes)"
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}{hint}"
