"""Offline tests for the configuration: defaults, secrets from the environment, and errors an
operator can act on, each naming its key path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ValidationError

from bot.config import Config, ConfigError, load_config, parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV = {"PATCHWORK_BOT_PASSWORD": "correct horse", "PATCHWORK_PICKLE_KEY": "0123456789abcdef-key"}

Data = dict[str, Any]


def minimal() -> Data:
    return {
        "homeserver": {"url": "https://matrix.example.org"},
        "bot": {"user_id": "@patchwork:example.org", "password": "${PATCHWORK_BOT_PASSWORD}"},
        "storage": {"path": "/var/lib/patchwork", "pickle_key": "${PATCHWORK_PICKLE_KEY}"},
        "policy": {"allowed_servers": ["example.org"]},
    }


def edited(change: Callable[[Data], object]) -> Data:
    data = copy.deepcopy(minimal())
    change(data)
    return data


def problems_for(data: Data, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="patchwork.yaml", environ=ENV if environ is None else environ)
    return caught.value.problems


def test_minimal_config_gets_the_documented_defaults() -> None:
    config = parse_config(minimal(), environ=ENV)
    assert config.homeserver.url == "https://matrix.example.org"
    assert config.bot.password is not None
    assert config.bot.password.get_secret_value() == "correct horse"
    assert config.bot.access_token is None
    assert config.bot.device_id == "PATCHWORK"
    assert config.bot.display_name == "Patchwork"
    assert config.bot.sync_timeout == timedelta(seconds=30)
    assert config.bot.undecryptable_grace == timedelta(minutes=2)
    assert config.bot.timeline_limit == 50
    assert config.storage.pickle_key.get_secret_value() == "0123456789abcdef-key"
    assert config.policy.admins == ()
    assert config.policy.family_creators == "anyone"
    assert config.prompts.interval == timedelta(weeks=8)
    assert config.prompts.remind_after == timedelta(days=3)
    assert config.prompts.lapse_after == timedelta(days=14)
    assert config.prompts.remove_on_lapse is True
    assert config.prompts.working_hours.days == ("MO", "TU", "WE", "TH", "FR")
    assert config.prompts.working_hours.start == time(9)
    assert config.prompts.working_hours.end == time(17)
    assert config.prompts.timezone == "Europe/London"
    assert config.prompts.sweep_every == timedelta(minutes=1)
    assert config.logging.level == "INFO"


def test_values_are_normalised() -> None:
    data = edited(
        lambda d: (
            d["homeserver"].update(url="https://matrix.example.org/"),
            d["policy"].update(
                allowed_servers=["Example.ORG", "partner.example:8448", "example.org"],
                admins=["@admin:EXAMPLE.org"],
            ),
            d.update(
                prompts={"working_hours": {"days": ["fr", "Monday", "MO"], "start": "8:30"}},
                logging={"level": "debug"},
            ),
        )
    )
    config = parse_config(data, environ=ENV)
    assert config.homeserver.url == "https://matrix.example.org"
    assert config.policy.allowed_servers == ("example.org", "partner.example:8448")
    assert config.prompts.working_hours.days == ("MO", "FR")
    assert config.prompts.working_hours.start == time(8, 30)
    assert config.logging.level == "DEBUG"


def test_durations_accept_short_and_iso_forms() -> None:
    data = edited(
        lambda d: d.update(prompts={"interval": "P8W", "remind_after": "1d 12h", "lapse_after": 7})
    )
    with pytest.raises(ConfigError, match="prompts.lapse_after"):
        parse_config(data, environ=ENV)  # 7 seconds is not longer than 1d 12h
    data["prompts"]["lapse_after"] = "PT48H"
    config = parse_config(data, environ=ENV)
    assert config.prompts.interval == timedelta(weeks=8)
    assert config.prompts.remind_after == timedelta(days=1, hours=12)
    assert config.prompts.lapse_after == timedelta(days=2)


def test_working_schedule_uses_the_configured_zone() -> None:
    data = edited(
        lambda d: d.update(
            prompts={
                "timezone": "America/New_York",
                "working_hours": {"days": ["SA"], "start": "10:00", "end": "12:00"},
            }
        )
    )
    schedule = parse_config(data, environ=ENV).prompts.working_schedule
    assert schedule.timezone == ZoneInfo("America/New_York")
    assert schedule.days == frozenset({5})
    assert (schedule.start, schedule.end) == (time(10), time(12))


def test_access_token_instead_of_password() -> None:
    data = edited(lambda d: d["bot"].update(password=None, access_token="syt_token"))
    config = parse_config(data, environ=ENV)
    assert config.bot.password is None
    assert config.bot.access_token is not None
    assert config.bot.access_token.get_secret_value() == "syt_token"


def test_config_is_immutable() -> None:
    config = parse_config(minimal(), environ=ENV)
    with pytest.raises(ValidationError):
        config.bot.user_id = "@someone:example.org"
    with pytest.raises(ValidationError):
        config.prompts.interval = timedelta(days=1)


def test_secrets_are_not_shown_in_repr_or_errors() -> None:
    config = parse_config(minimal(), environ=ENV)
    assert "correct horse" not in repr(config)
    assert "0123456789abcdef-key" not in repr(config)
    short = dict(ENV, PATCHWORK_PICKLE_KEY="hunter2")
    (problem,) = problems_for(minimal(), short)
    assert problem.startswith("storage.pickle_key:")
    assert "hunter2" not in problem


def test_environment_substitution_inside_text_and_escape() -> None:
    data = edited(lambda d: d["bot"].update(display_name="Patchwork (${PLACE}) $${NOT_A_VARIABLE}"))
    config = parse_config(data, environ=dict(ENV, PLACE="Lichfield"))
    assert config.bot.display_name == "Patchwork (Lichfield) ${NOT_A_VARIABLE}"


def test_environment_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert parse_config(minimal()).bot.user_id == "@patchwork:example.org"


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        pytest.param(
            lambda d: d["homeserver"].pop("url"), "homeserver.url", "missing", id="missing-url"
        ),
        pytest.param(lambda d: d.pop("homeserver"), "homeserver", "missing", id="missing-section"),
        pytest.param(
            lambda d: d["homeserver"].update(url="matrix.example.org"),
            "homeserver.url",
            "https://",
            id="url-without-scheme",
        ),
        pytest.param(
            lambda d: d["homeserver"].update(url="ftp://matrix.example.org"),
            "homeserver.url",
            "not a web address",
            id="url-wrong-scheme",
        ),
        pytest.param(
            lambda d: d["homeserver"].update(url="https://matrix.example.org:99999"),
            "homeserver.url",
            "port",
            id="url-bad-port",
        ),
        pytest.param(
            lambda d: d["bot"].update(user_id="patchwork@example.org"),
            "bot.user_id",
            "not a Matrix user id",
            id="bad-user-id",
        ),
        pytest.param(
            lambda d: d["bot"].update(user_id="@patchwork"),
            "bot.user_id",
            "@name:server",
            id="user-id-without-server",
        ),
        pytest.param(
            lambda d: d["bot"].update(user_id=["@patchwork:example.org"]),
            "bot.user_id",
            "not a list",
            id="user-id-is-a-list",
        ),
        pytest.param(
            lambda d: d["bot"].update(access_token="syt_token"),
            "bot.access_token",
            "exactly one of bot.password or bot.access_token",
            id="password-and-token",
        ),
        pytest.param(
            lambda d: d["bot"].pop("password"),
            "bot.password",
            "exactly one of bot.password or bot.access_token",
            id="neither-password-nor-token",
        ),
        pytest.param(
            lambda d: d["bot"].update(password=""), "bot.password", "empty", id="empty-password"
        ),
        pytest.param(
            lambda d: d["bot"].update(device_id="my device"),
            "bot.device_id",
            "letters, digits and underscores",
            id="bad-device-id",
        ),
        pytest.param(
            lambda d: d["bot"].update(timeline_limit=0),
            "bot.timeline_limit",
            "1 to 1000",
            id="timeline-limit-too-small",
        ),
        pytest.param(
            lambda d: d["bot"].update(timeline_limit=5000),
            "bot.timeline_limit",
            "1 to 1000",
            id="timeline-limit-too-large",
        ),
        pytest.param(
            lambda d: d["bot"].update(timeline_limit=True),
            "bot.timeline_limit",
            "whole number",
            id="timeline-limit-boolean",
        ),
        pytest.param(
            lambda d: d["bot"].update(sync_timeout="soon"),
            "bot.sync_timeout",
            "not a duration",
            id="bad-sync-timeout",
        ),
        pytest.param(
            lambda d: d["storage"].update(pickle_key="too-short"),
            "storage.pickle_key",
            "at least 16 characters",
            id="short-pickle-key",
        ),
        pytest.param(
            lambda d: d["storage"].pop("pickle_key"),
            "storage.pickle_key",
            "missing",
            id="missing-pickle-key",
        ),
        pytest.param(
            lambda d: d["storage"].update(path=""), "storage.path", "empty", id="empty-path"
        ),
        pytest.param(
            lambda d: d["policy"].update(allowed_servers=[]),
            "policy.allowed_servers",
            "at least one server name",
            id="empty-allowed-servers",
        ),
        pytest.param(
            lambda d: d["policy"].update(allowed_servers=["https://example.org"]),
            "policy.allowed_servers",
            "not a server name",
            id="allowed-server-is-a-url",
        ),
        pytest.param(
            lambda d: d["policy"].update(admins=["@admin:example.org", "@eve:evil.example"]),
            "policy.admins",
            "@eve:evil.example is not on an allowed server",
            id="admin-on-foreign-server",
        ),
        pytest.param(
            lambda d: d["policy"].update(admins=["admin"]),
            "policy.admins[0]",
            "not a Matrix user id",
            id="admin-not-a-user-id",
        ),
        pytest.param(
            lambda d: d["policy"].update(family_creators="everyone"),
            "policy.family_creators",
            "anyone or admins",
            id="bad-family-creators",
        ),
        pytest.param(
            lambda d: d.update(prompts={"interval": "8 weeks"}),
            "prompts.interval",
            "unknown unit 'weeks'",
            id="bad-duration",
        ),
        pytest.param(
            lambda d: d.update(prompts={"interval": "P2M"}),
            "prompts.interval",
            "no fixed length",
            id="duration-in-months",
        ),
        pytest.param(
            lambda d: d.update(prompts={"remind_after": "0s"}),
            "prompts.remind_after",
            "longer than zero",
            id="zero-duration",
        ),
        pytest.param(
            lambda d: d.update(prompts={"remind_after": "14d", "lapse_after": "14d"}),
            "prompts.lapse_after",
            "not longer than prompts.remind_after",
            id="lapse-equal-to-remind",
        ),
        pytest.param(
            lambda d: d.update(prompts={"remind_after": "20d"}),
            "prompts.lapse_after",
            "not longer than prompts.remind_after 20d",
            id="default-lapse-before-remind",
        ),
        pytest.param(
            lambda d: d.update(prompts={"sweep_every": "2h"}),
            "prompts.sweep_every",
            "2h is too long (expected at most 1h",
            id="sweep-too-rare",
        ),
        pytest.param(
            lambda d: d.update(prompts={"remove_on_lapse": "perhaps"}),
            "prompts.remove_on_lapse",
            "true or false",
            id="bad-boolean",
        ),
        pytest.param(
            lambda d: d.update(prompts={"timezone": "Europe/Lodnon"}),
            "prompts.timezone",
            "did you mean Europe/London",
            id="bad-timezone",
        ),
        pytest.param(
            lambda d: d.update(prompts={"timezone": "../etc/passwd"}),
            "prompts.timezone",
            "not a known timezone",
            id="timezone-path",
        ),
        pytest.param(
            lambda d: d.update(prompts={"working_hours": {"days": ["MO", "FUN"]}}),
            "prompts.working_hours.days[1]",
            "not a day of the week",
            id="bad-weekday",
        ),
        pytest.param(
            lambda d: d.update(prompts={"working_hours": {"days": []}}),
            "prompts.working_hours.days",
            "at least one day",
            id="no-weekdays",
        ),
        pytest.param(
            lambda d: d.update(prompts={"working_hours": {"start": "17:00", "end": "09:00"}}),
            "prompts.working_hours.end",
            "not after start 17:00",
            id="start-after-end",
        ),
        pytest.param(
            lambda d: d.update(prompts={"working_hours": {"start": "12:00", "end": "12:00"}}),
            "prompts.working_hours.end",
            "cannot cross midnight",
            id="start-equals-end",
        ),
        pytest.param(
            lambda d: d.update(prompts={"working_hours": {"start": "9am"}}),
            "prompts.working_hours.start",
            "HH:MM",
            id="bad-time",
        ),
        pytest.param(
            lambda d: d.update(prompts={"working_hours": {"end": 1020}}),
            "prompts.working_hours.end",
            "in quotes",
            id="time-read-as-a-number",
        ),
        pytest.param(
            lambda d: d.update(logging={"level": "LOUD"}),
            "logging.level",
            "DEBUG, INFO, WARNING or ERROR",
            id="bad-log-level",
        ),
        pytest.param(
            lambda d: d.update(extras={"a": 1}),
            "extras",
            "is not a known setting",
            id="unknown-top-level-key",
        ),
        pytest.param(
            lambda d: d["bot"].update(passwrd="x"),
            "bot.passwrd",
            "did you mean bot.password",
            id="unknown-nested-key",
        ),
        pytest.param(
            lambda d: d.update(prompts={"working_hours": {"lunch": "12:00"}}),
            "prompts.working_hours.lunch",
            "is not a known setting",
            id="unknown-deeply-nested-key",
        ),
        pytest.param(
            lambda d: d.update(bot=None),
            "bot",
            "has no value",
            id="empty-section",
        ),
        pytest.param(
            lambda d: d.update(storage=["data"]),
            "storage",
            "should be a section",
            id="section-is-a-list",
        ),
        pytest.param(
            lambda d: d["policy"].update(allowed_servers="example.org"),
            "policy.allowed_servers",
            "should be a list",
            id="servers-not-a-list",
        ),
        pytest.param(
            lambda d: d["bot"].update(password="${PATCHWORK_MISSING_PASSWORD}"),
            "bot.password",
            "environment variable PATCHWORK_MISSING_PASSWORD is not set",
            id="missing-env-var",
        ),
        pytest.param(
            lambda d: d["bot"].update(password="${not valid}"),
            "bot.password",
            "not a valid environment variable reference",
            id="bad-env-reference",
        ),
        pytest.param(
            lambda d: d["bot"].update(password="${PATCHWORK_BOT_PASSWORD"),
            "bot.password",
            "without its closing }",
            id="unclosed-env-reference",
        ),
    ],
)
def test_each_bad_setting_names_its_key(
    change: Callable[[Data], object], key: str, words: str
) -> None:
    problems = problems_for(edited(change))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}: ")
    assert words in problems[0]


def test_built_in_problems_say_what_is_expected() -> None:
    (problem,) = problems_for(edited(lambda d: d["homeserver"].pop("url")))
    assert problem == (
        "homeserver.url: is missing "
        "(expected the homeserver's base URL, e.g. https://matrix.example.org)"
    )


def test_every_problem_is_reported_at_once() -> None:
    data = edited(
        lambda d: (
            d["homeserver"].update(url="nope"),
            d["bot"].update(user_id="nobody"),
            d.update(prompts={"timezone": "Mars/Olympus"}, colour="blue"),
        )
    )
    problems = problems_for(data)
    keys = sorted(problem.split(":", 1)[0] for problem in problems)
    assert keys == ["bot.user_id", "colour", "homeserver.url", "prompts.timezone"]


def test_a_missing_variable_is_not_reported_twice() -> None:
    """An empty stand-in for the missing secret must not also fail as 'too short'."""
    problems = problems_for(minimal(), environ={"PATCHWORK_BOT_PASSWORD": "x"})
    assert problems == [
        "storage.pickle_key: the environment variable PATCHWORK_PICKLE_KEY is not set "
        "(expected it to hold this value when the bot starts)"
    ]


def test_error_text_has_a_heading_naming_the_file() -> None:
    data = edited(lambda d: (d["homeserver"].pop("url"), d["bot"].update(user_id="x")))
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="/etc/patchwork/config.yaml", environ=ENV)
    lines = str(caught.value).splitlines()
    assert lines[0] == "The configuration in /etc/patchwork/config.yaml has 2 problems:"
    assert lines[1].startswith("  - homeserver.url: ")
    assert lines[2].startswith("  - bot.user_id: ")
    assert "ValidationError" not in str(caught.value)
    assert "errors.pydantic.dev" not in str(caught.value)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


VALID_YAML = """\
homeserver:
  url: https://matrix.example.org
bot:
  user_id: "@patchwork:example.org"
  password: ${PATCHWORK_BOT_PASSWORD}
storage:
  path: ./state
  pickle_key: ${PATCHWORK_PICKLE_KEY}
policy:
  allowed_servers: [example.org]
"""


@pytest.fixture
def secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("secrets_in_environment")
def test_load_config_resolves_storage_against_the_files_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID_YAML))
    assert config.storage.path == tmp_path.absolute() / "state"


@pytest.mark.usefixtures("secrets_in_environment")
def test_absolute_storage_path_is_kept(tmp_path: Path) -> None:
    text = VALID_YAML.replace("./state", "/srv/patchwork")
    assert load_config(write(tmp_path, text)).storage.path == Path("/srv/patchwork")


@pytest.mark.usefixtures("secrets_in_environment")
def test_unquoted_times_stay_times_of_day(tmp_path: Path) -> None:
    """Plain YAML 1.1 would read 9:30 as the base-60 number 570."""
    text = VALID_YAML + "prompts:\n  working_hours:\n    start: 9:30\n    end: 17:45\n"
    hours = load_config(write(tmp_path, text)).prompts.working_hours
    assert (hours.start, hours.end) == (time(9, 30), time(17, 45))


@pytest.mark.usefixtures("secrets_in_environment")
def test_numbers_in_yaml_are_still_numbers(tmp_path: Path) -> None:
    text = VALID_YAML.replace("bot:\n", "bot:\n  timeline_limit: 200\n  sync_timeout: 20\n")
    config = load_config(write(tmp_path, text))
    assert config.bot.timeline_limit == 200
    assert config.bot.sync_timeout == timedelta(seconds=20)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("", "the file is empty", id="empty"),
        pytest.param("- homeserver\n", "not a list", id="top-level-list"),
        pytest.param("homeserver: [\n", "line 2", id="broken-yaml"),
        pytest.param(
            VALID_YAML.replace('"@patchwork:example.org"', "@patchwork:example.org"),
            "must be in quotes",
            id="unquoted-user-id",
        ),
        pytest.param(
            VALID_YAML + "homeserver:\n  url: https://other.example.org\n",
            "the key 'homeserver' appears twice",
            id="duplicate-key",
        ),
    ],
)
@pytest.mark.usefixtures("secrets_in_environment")
def test_load_config_explains_file_problems(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    assert len(caught.value.problems) == 1
    assert words in caught.value.problems[0]


def test_load_config_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.yaml")


def test_example_config_loads_and_documents_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.yaml must never drift from the models."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    example = REPO_ROOT / "config.example.yaml"
    config = load_config(example)
    assert config.storage.path == REPO_ROOT / "data"
    assert config.bot.password is not None
    assert config.bot.password.get_secret_value() == ENV["PATCHWORK_BOT_PASSWORD"]

    text = example.read_text(encoding="utf-8")
    for section_name, section in Config.model_fields.items():
        assert f"\n{section_name}:" in text, section_name
        model = section.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        for key in model.model_fields:
            assert f" {key}:" in text, f"{section_name}.{key} is not in config.example.yaml"
    for key in ("days", "start", "end"):
        assert f"    {key}:" in text


def test_example_config_needs_its_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATCHWORK_BOT_PASSWORD", raising=False)
    monkeypatch.delenv("PATCHWORK_PICKLE_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_config(REPO_ROOT / "config.example.yaml")
    assert [problem.split(":", 1)[0] for problem in caught.value.problems] == [
        "bot.password",
        "storage.pickle_key",
    ]
