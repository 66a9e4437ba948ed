"""The configuration's sections as frozen pydantic models, with their checks.

Each section model forbids unknown keys and validates its own values; the field types shared by
several sections (Matrix user ids, times of day, weekday codes) raise operator-facing messages.
A check that spans several keys raises _KeyProblem to blame the one key an operator should fix.
Each field's description says what is expected; error messages quote it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PlainValidator,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.config.errors import _KeyProblem, _kind
from bot.config.prompts import PromptsConfig
from bot.config.retention import RetentionConfig
from bot.config.section import _Section
from bot.durations import Duration
from bot.ratelimit import BURST, PER_MINUTE
from rooms.references import DEFAULT_REFERENCE_PATTERN

_SERVER_NAME = r"(?:[0-9A-Za-z.-]{1,255}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
_SERVER_NAME_RE = re.compile(_SERVER_NAME)
_USER_ID_RE = re.compile(rf"@(?P<localpart>[\x21-\x39\x3B-\x7E]+):(?P<server>{_SERVER_NAME})")
_DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_]+")
_PICKLE_KEY_MIN_LENGTH = 16


# Field types shared by several sections. Each raises ValueError with an operator-facing message,
# even for a wrong type: pydantic reports ValueError as a validation problem but lets TypeError out.


def _user_id(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(  # noqa: TRY004
            f"should be a Matrix user id, not {_kind(value)} "
            '(expected @name:server in quotes, e.g. "@patchwork:example.org")'
        )
    if len(value) > 255 or not _USER_ID_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Matrix user id (expected @name:server, e.g. "
            '"@patchwork:example.org", in quotes because YAML treats a leading @ specially)'
        )
    return value


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1].lower()


UserId = Annotated[str, PlainValidator(_user_id, json_schema_input_type=str)]
class HomeserverConfig(_Section):
    """Where the bot's Matrix account lives."""

    url: str = Field(
        description="the homeserver's base URL, e.g. https://matrix.example.org",
    )

    @field_validator("url", mode="after")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        try:
            parts.port  # noqa: B018 - parsing the port is what validates it
        except ValueError:
            raise ValueError(
                f"{value!r} has an invalid port number (expected a port from 1 to 65535, "
                "e.g. https://matrix.example.org:8448, or none)"
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{value!r} is not a web address (expected http:// or https:// followed by "
                "the homeserver's name, e.g. https://matrix.example.org)"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(
                f"{value!r} should be a plain base URL without ?query, #fragment or user:password@"
            )
        return value.strip().rstrip("/")


class BotConfig(_Section):
    """The bot's own Matrix account and how it talks to the homeserver."""

    user_id: UserId = Field(description='the bot\'s Matrix user id, e.g. "@patchwork:example.org"')
    password: SecretStr | None = Field(
        default=None, description="the bot account's password, e.g. ${PATCHWORK_BOT_PASSWORD}"
    )
    access_token: SecretStr | None = Field(
        default=None, description="an access token for the bot account, instead of a password"
    )
    device_id: str = Field(
        default="PATCHWORK",
        description="a fixed device id of letters, digits and underscores, e.g. PATCHWORK",
    )
    display_name: str = Field(
        default="Patchwork", min_length=1, description="the name shown for the bot in rooms"
    )
    sync_timeout: Duration = Field(
        default=timedelta(seconds=30), description="a duration such as 30s"
    )
    undecryptable_grace: Duration = Field(
        default=timedelta(minutes=2),
        description="a duration such as 2m: how long to wait for a missing room key",
    )
    timeline_limit: int = Field(
        default=50, ge=1, le=1000, description="a whole number of events from 1 to 1000"
    )
    command_burst: int = Field(
        default=BURST, ge=1, le=10000, description="how many commands one sender may send at once"
    )
    commands_per_minute: int = Field(
        default=PER_MINUTE,
        ge=1,
        le=100000,
        description="how many commands a minute one sender may send after the burst",
    )
    reset_cross_signing: bool = Field(
        default=False,
        description="true for one start to replace lost cross-signing keys, resetting the bot's "
        "identity, else false",
    )

    @field_validator("password", "access_token", mode="after")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError(
                "is empty (expected the secret itself; if it comes from ${NAME}, "
                "that environment variable is set but empty)"
            )
        return value

    @field_validator("device_id", mode="after")
    @classmethod
    def _check_device_id(cls, value: str) -> str:
        if not _DEVICE_ID_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a usable device id "
                "(expected letters, digits and underscores only, e.g. PATCHWORK)"
            )
        return value

    @field_validator("timeline_limit", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("should be a whole number from 1 to 1000, not true/false")  # noqa: TRY004
        return value

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> Self:
        if self.password is None and self.access_token is None:
            raise _KeyProblem(
                "password",
                "is missing (expected exactly one of bot.password or bot.access_token)",
            )
        if self.password is not None and self.access_token is not None:
            raise _KeyProblem(
                "access_token",
                "cannot be used together with bot.password "
                "(expected exactly one of bot.password or bot.access_token)",
            )
        return self


class StorageConfig(_Section):
    """Where Patchwork keeps its database, end-to-end encryption store and signing keys."""

    path: Path = Field(
        description="a folder for the bot's data, e.g. ./data (relative to the config file)"
    )
    pickle_key: SecretStr = Field(
        description="a long random secret that encrypts the E2EE store, "
        "e.g. ${PATCHWORK_PICKLE_KEY}"
    )

    @field_validator("path", mode="before")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty (expected a folder for the bot's data, e.g. ./data)")
        return value

    @field_validator("path", mode="after")
    @classmethod
    def _absolute(cls, value: Path, info: ValidationInfo) -> Path:
        """Resolve against the config file's folder so the bot does not depend on its cwd."""
        value = value.expanduser()
        if value.is_absolute():
            return value
        context = info.context if isinstance(info.context, Mapping) else {}
        base = context.get("base_dir") or Path.cwd()
        return Path(base).absolute() / value

    @field_validator("pickle_key", mode="after")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        length = len(value.get_secret_value())
        if length < _PICKLE_KEY_MIN_LENGTH:
            raise ValueError(
                f"is too short: it has {length} characters (expected at least "
                f"{_PICKLE_KEY_MIN_LENGTH} characters of random text, "
                "e.g. the output of `openssl rand -hex 32`)"
            )
        return value


class PolicyConfig(_Section):
    """Who may be on a family team and who runs the bot."""

    allowed_servers: tuple[str, ...] = Field(
        description="a list of homeserver names whose users may join teams, e.g. [example.org]"
    )
    admins: tuple[UserId, ...] = Field(
        default=(), description='a list of Matrix user ids, e.g. ["@it-admin:example.org"]'
    )
    family_servers: tuple[str, ...] = Field(
        default=(),
        description="a list of homeserver names whose users may be given a family's own view "
        "of its team (besides allowed_servers), e.g. [residents.example.org]",
    )
    family_creators: Literal["anyone", "admins"] = Field(
        default="anyone", description="who may create family rooms: anyone or admins"
    )
    reference_pattern: str = Field(
        default=DEFAULT_REFERENCE_PATTERN.pattern,
        description="a regular expression that whole case references match, "
        'e.g. "CIN/[0-9]{4}/[0-9]{5}"',
    )

    @field_validator("allowed_servers", "family_servers", mode="after")
    @classmethod
    def _server_names(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        names: list[str] = []
        for raw in value:
            name = raw.strip().lower()
            if not _SERVER_NAME_RE.fullmatch(name):
                raise ValueError(
                    f"{raw!r} is not a server name (expected just the name as it appears "
                    "after the colon in user ids, e.g. example.org)"
                )
            if name not in names:
                names.append(name)
        if not names and info.field_name == "allowed_servers":
            raise ValueError(
                "is empty (expected at least one server name, e.g. [example.org]; "
                "otherwise nobody could join a team)"
            )
        return tuple(names)

    @field_validator("reference_pattern", mode="after")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"{value!r} is not a regular expression Python can read ({exc}; expected "
                'a pattern that whole case references match, e.g. "CIN/[0-9]{4}/[0-9]{5}")'
            ) from None
        return value

    @model_validator(mode="after")
    def _admins_on_allowed_servers(self) -> Self:
        foreign = [admin for admin in self.admins if _server_of(admin) not in self.allowed_servers]
        if foreign:
            raise _KeyProblem(
                "admins",
                f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not on an allowed "
                f"server (expected users of {', '.join(self.allowed_servers)}, "
                "as listed in policy.allowed_servers)",
            )
        return self


class LoggingConfig(_Section):
    """How much the bot writes to its log."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="one of DEBUG, INFO, WARNING or ERROR"
    )
    format: Literal["text", "json"] = Field(
        default="text", description="text (one readable line each) or json (one object a line)"
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


_LISTEN_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.-]+):(?P<port>[0-9]{1,5})")


class MetricsConfig(_Section):
    """The health and metrics endpoint (`/healthz`, `/metrics`); off unless `listen` is set."""

    listen: str | None = Field(
        default=None,
        description='host:port to serve /healthz and /metrics on, e.g. "127.0.0.1:9464"',
    )
    max_sync_lag: Duration = Field(
        default=timedelta(minutes=2),
        description="a duration such as 2m: /healthz fails when the last sync is older",
    )

    @field_validator("listen", mode="after")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _LISTEN_RE.fullmatch(value.strip())
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError(
                f"{value!r} is not host:port (expected e.g. \"127.0.0.1:9464\", a port from "
                "1 to 65535 on an address of this machine)"
            )
        return value.strip()

    @property
    def host(self) -> str:
        assert self.listen is not None
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        assert self.listen is not None
        return int(self.listen.rpartition(":")[2])


class Config(_Section):
    """The whole configuration file."""

    homeserver: HomeserverConfig = Field(description="a section with the homeserver's url")
    bot: BotConfig = Field(description="a section with user_id and either password or access_token")
    storage: StorageConfig = Field(description="a section with path and pickle_key")
    policy: PolicyConfig = Field(description="a section with at least allowed_servers")
    prompts: PromptsConfig = Field(
        default_factory=PromptsConfig, description="a section of prompt settings"
    )
    logging: LoggingConfig = Field(
        default_factory=LoggingConfig, description="a section with level and format"
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="a section with listen (host:port)"
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="a section with closed_case and purge_every"
    )
