"""Offline tests for the bot's cross-signing identity: canonical JSON, signatures, the key file."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import vodozemac

from bot.crosssigning import (
    CrossSigningError,
    CrossSigningKeys,
    SigningKey,
    canonical_json,
    ensure_cross_signed,
    sign_json,
    unpadded_b64decode,
    unpadded_b64encode,
    verify_json,
)

# The spec's appendix test vector: this seed, signing as "domain" with key id "ed25519:1".
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
USER = "@patchwork:localhost"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, "{}"),
        ({"one": 1, "two": "Two"}, '{"one":1,"two":"Two"}'),
        ({"b": "2", "a": "1"}, '{"a":"1","b":"2"}'),
        (
            {
                "auth": {
                    "success": True,
                    "mxid": "@john.doe:example.com",
                    "profile": {
                        "display_name": "John Doe",
                        "three_pids": [
                            {"medium": "email", "address": "john.doe@example.org"},
                            {"medium": "msisdn", "address": "123456789"},
                        ],
                    },
                }
            },
            '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
            '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
            '{"address":"123456789","medium":"msisdn"}]},"success":true}}',
        ),
        ({"a": "日本語"}, '{"a":"日本語"}'),
        ({"本": 2, "日": 1}, '{"日":1,"本":2}'),
        ({"a": "\u65e5"}, '{"a":"日"}'),
        ({"a": None}, '{"a":null}'),
    ],
)
def test_canonical_json_matches_the_spec_examples(value: object, expected: str) -> None:
    assert canonical_json(value) == expected.encode("utf-8")


def test_canonical_json_parses_the_spec_example_written_with_whitespace() -> None:
    text = '{\n    "a": "\\u65E5"\n}'
    assert canonical_json(json.loads(text)) == '{"a":"日"}'.encode()


@pytest.mark.parametrize("bad", [{"a": 1.5}, {"a": 2**53}, {"a": float("nan")}, {"a": b"x"}])
def test_canonical_json_refuses_what_it_cannot_represent(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_json(bad)


def test_unpadded_base64_matches_the_spec_examples() -> None:
    for raw, encoded in [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
    ]:
        assert unpadded_b64encode(raw) == encoded
        assert unpadded_b64decode(encoded) == raw


def test_signatures_match_the_spec_test_vectors() -> None:
    key = SigningKey(unpadded_b64decode(SPEC_SEED))
    assert (
        key.sign(canonical_json({}))
        == "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
    )
    assert (
        key.sign(canonical_json({"one": 1, "two": "Two"}))
        == "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
    )


def test_sign_json_adds_a_signature_that_verifies_with_the_public_key() -> None:
    key = SigningKey.generate()
    obj = {"b": [1, 2], "a": "x", "unsigned": {"age": 5}, "signatures": {"@o:s": {"k": "v"}}}
    signed = sign_json(obj, key, USER)

    assert "unsigned" not in signed
    assert signed["signatures"]["@o:s"] == {"k": "v"}, "other signatures are kept"
    assert set(signed["signatures"][USER]) == {f"ed25519:{key.public_key}"}
    assert verify_json(signed, key.public_key, USER)
    assert obj["signatures"] == {"@o:s": {"k": "v"}}, "the input is not modified"

    # An independent Ed25519 implementation agrees.
    signature = signed["signatures"][USER][key.key_id]
    message = canonical_json({"a": "x", "b": [1, 2]})
    vodozemac.Ed25519PublicKey.from_base64(key.public_key).verify_signature(
        message, vodozemac.Ed25519Signature.from_base64(signature)
    )


def test_verify_json_rejects_tampering_and_other_keys() -> None:
    key = SigningKey.generate()
    signed = sign_json({"a": 1}, key, USER)
    assert not verify_json({**signed, "a": 2}, key.public_key, USER)
    assert not verify_json(signed, SigningKey.generate().public_key, USER)
    assert not verify_json(signed, key.public_key, "@someone:else")
    # `unsigned` added later by a server does not break the signature.
    assert verify_json({**signed, "unsigned": {"device_display_name": "x"}}, key.public_key, USER)


def test_key_file_round_trips_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cross_signing.json"
    created = CrossSigningKeys.load_or_create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path], "no temporary file left behind"
    loaded = CrossSigningKeys.load_or_create(path)
    assert loaded == created
    assert loaded.master.public_key == created.master.public_key
    assert len({created.master.seed, created.self_signing.seed, created.user_signing.seed}) == 3


def test_saving_replaces_atomically_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = CrossSigningKeys.generate()
    first.save(path)
    path.chmod(0o644)
    second = CrossSigningKeys.generate()
    second.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert CrossSigningKeys.load(path) == second


def test_a_loose_key_file_is_tightened_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = CrossSigningKeys.load_or_create(path)
    path.chmod(0o644)
    assert CrossSigningKeys.load_or_create(path) == keys
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_corrupt_key_file_is_an_error_not_a_new_identity(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"version": 1, "master": "short"}')
    with pytest.raises(CrossSigningError, match="unreadable"):
        CrossSigningKeys.load_or_create(path)
    assert path.read_text() == '{"version": 1, "master": "short"}'


def test_seeds_never_appear_in_repr() -> None:
    keys = CrossSigningKeys.generate()
    assert unpadded_b64encode(keys.master.seed) not in repr(keys)
    assert repr(keys.master.seed) not in repr(keys)


def test_the_signed_self_signing_key_carries_the_masters_signature() -> None:
    keys = CrossSigningKeys.generate()
    ssk = keys.self_signing_key_object(USER)
    usk = keys.user_signing_key_object(USER)
    master = keys.master_key_object(USER)

    assert ssk["usage"] == ["self_signing"]
    assert ssk["keys"] == {keys.self_signing.key_id: keys.self_signing.public_key}
    assert verify_json(ssk, keys.master.public_key, USER)
    assert usk["usage"] == ["user_signing"]
    assert verify_json(usk, keys.master.public_key, USER)
    assert master == {
        "user_id": USER,
        "usage": ["master"],
        "keys": {keys.master.key_id: keys.master.public_key},
    }
    body = keys.device_signing_upload(USER)
    assert body == {"master_key": master, "self_signing_key": ssk, "user_signing_key": usk}


def test_a_device_signed_by_the_self_signing_key_verifies() -> None:
    keys = CrossSigningKeys.generate()
    device = {
        "user_id": USER,
        "device_id": "BOTDEVICE",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {"curve25519:BOTDEVICE": "abc", "ed25519:BOTDEVICE": "def"},
        "signatures": {USER: {"ed25519:BOTDEVICE": "self-signature"}},
        "unsigned": {"device_display_name": "Patchwork"},
    }
    signed = keys.sign_device(device, USER)
    assert "unsigned" not in signed
    assert signed["signatures"][USER]["ed25519:BOTDEVICE"] == "self-signature"
    assert verify_json(signed, keys.self_signing.public_key, USER)
    assert not verify_json(signed, keys.master.public_key, USER)


class FakeResponse:
    """Just enough of aiohttp's ClientResponse for the module's requests."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self._body = body

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def json(self, content_type: str | None = None) -> dict[str, Any]:
        return self._body


class FakeHomeserver:
    """The cross-signing endpoints of a homeserver, checking signatures like Synapse does."""

    PASSWORD = "correct horse"

    def __init__(self, *, device_uploaded: bool = True) -> None:
        self.user_id = USER
        self.device_id = "BOTDEVICE"
        self.access_token = "token"
        self.calls: list[str] = []
        self.cross_signing: dict[str, dict[str, Any]] = {}
        self.rate_limit_next = 0
        self.reject_signatures = False
        self.device: dict[str, Any] | None = None
        if device_uploaded:
            self.device = {
                "user_id": USER,
                "device_id": self.device_id,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {"curve25519:BOTDEVICE": "c", "ed25519:BOTDEVICE": "e"},
                "signatures": {USER: {"ed25519:BOTDEVICE": "device-self-signature"}},
            }

    async def send(
        self, method: str, path: str, data: str, headers: dict[str, str]
    ) -> FakeResponse:
        assert method == "POST"
        assert headers["Authorization"] == "Bearer token"
        name = path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1]
        self.calls.append(name)
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            return FakeResponse(429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1})
        body = json.loads(data)
        handler = {
            "keys/query": self._query,
            "device_signing/upload": self._upload_keys,
            "signatures/upload": self._upload_signatures,
        }[name]
        return handler(body)

    def _query(self, body: dict[str, Any]) -> FakeResponse:
        assert body == {"device_keys": {USER: [self.device_id]}}
        devices = {}
        if self.device is not None:
            devices[self.device_id] = {**self.device, "unsigned": {"device_display_name": "bot"}}
        result: dict[str, Any] = {"device_keys": {USER: devices}, "failures": {}}
        for usage in ("master", "self_signing", "user_signing"):
            if usage in self.cross_signing:
                result[f"{usage}_keys"] = {USER: self.cross_signing[usage]}
        return FakeResponse(200, result)

    def _upload_keys(self, body: dict[str, Any]) -> FakeResponse:
        auth = body.pop("auth", None)
        new = {
            "master": body["master_key"],
            "self_signing": body["self_signing_key"],
            "user_signing": body["user_signing_key"],
        }
        if new == self.cross_signing:
            return FakeResponse(200, {})
        if self.cross_signing and auth is None:
            return FakeResponse(
                401, {"session": "S1", "flows": [{"stages": ["m.login.password"]}], "params": {}}
            )
        if self.cross_signing and (
            auth.get("password") != self.PASSWORD
            or auth.get("session") != "S1"
            or auth.get("identifier") != {"type": "m.id.user", "user": USER}
        ):
            return FakeResponse(401, {"errcode": "M_FORBIDDEN", "error": "Invalid password"})
        master_public = next(iter(new["master"]["keys"].values()))
        for usage in ("self_signing", "user_signing"):
            assert verify_json(new[usage], master_public, USER)
        self.cross_signing = new
        return FakeResponse(200, {})

    def _upload_signatures(self, body: dict[str, Any]) -> FakeResponse:
        signed = body[USER][self.device_id]
        ssk_public = next(iter(self.cross_signing["self_signing"]["keys"].values()))
        if self.reject_signatures or not verify_json(signed, ssk_public, USER):
            failure = {"errcode": "M_INVALID_SIGNATURE", "error": "Invalid signature"}
            return FakeResponse(200, {"failures": {USER: {self.device_id: failure}}})
        assert "unsigned" not in signed
        assert self.device is not None
        self.device = signed
        return FakeResponse(200, {"failures": {}})


def _device_is_cross_signed(server: FakeHomeserver) -> bool:
    assert server.device is not None
    ssk_public = next(iter(server.cross_signing["self_signing"]["keys"].values()))
    return verify_json(server.device, ssk_public, USER)


async def test_first_run_publishes_the_keys_and_signs_the_device(tmp_path: Path) -> None:
    server = FakeHomeserver()
    path = tmp_path / "keys.json"
    assert await ensure_cross_signed(server, path, password=None) is True
    assert server.calls == ["keys/query", "device_signing/upload", "signatures/upload"]
    keys = CrossSigningKeys.load(path)
    assert server.cross_signing["master"] == keys.master_key_object(USER)
    assert _device_is_cross_signed(server)
    assert server.device is not None
    assert server.device["signatures"][USER]["ed25519:BOTDEVICE"] == "device-self-signature"


async def test_a_restart_with_the_same_device_uploads_nothing(tmp_path: Path) -> None:
    server = FakeHomeserver()
    path = tmp_path / "keys.json"
    await ensure_cross_signed(server, path, password=None)
    server.calls.clear()
    assert await ensure_cross_signed(server, path, password=None) is False
    assert server.calls == ["keys/query"]


async def test_a_new_device_is_signed_without_republishing_the_keys(tmp_path: Path) -> None:
    server = FakeHomeserver()
    path = tmp_path / "keys.json"
    await ensure_cross_signed(server, path, password=None)
    server.device_id = "NEWDEVICE"
    server.device = {"user_id": USER, "device_id": "NEWDEVICE", "keys": {"ed25519:NEWDEVICE": "n"}}
    server.calls.clear()
    assert await ensure_cross_signed(server, path, password=None) is True
    assert server.calls == ["keys/query", "signatures/upload"]
    assert _device_is_cross_signed(server)


async def test_a_lost_key_file_is_replaced_with_the_password(tmp_path: Path) -> None:
    server = FakeHomeserver()
    await ensure_cross_signed(server, tmp_path / "old.json", password=None)
    old_master = server.cross_signing["master"]
    server.calls.clear()

    assert await ensure_cross_signed(
        server, tmp_path / "new.json", password=server.PASSWORD, reset=True
    )
    assert server.calls == [
        "keys/query",
        "device_signing/upload",
        "device_signing/upload",
        "signatures/upload",
    ]
    assert server.cross_signing["master"] != old_master
    assert server.cross_signing["master"] == CrossSigningKeys.load(
        tmp_path / "new.json"
    ).master_key_object(USER)
    assert _device_is_cross_signed(server)


async def test_a_different_identity_without_a_password_is_a_clear_error(tmp_path: Path) -> None:
    server = FakeHomeserver()
    await ensure_cross_signed(server, tmp_path / "old.json", password=None)
    with pytest.raises(CrossSigningError, match="different cross-signing identity"):
        await ensure_cross_signed(server, tmp_path / "new.json", password=None, reset=True)


async def test_a_wrong_password_is_reported(tmp_path: Path) -> None:
    server = FakeHomeserver()
    await ensure_cross_signed(server, tmp_path / "old.json", password=None)
    with pytest.raises(CrossSigningError, match="M_FORBIDDEN") as raised:
        await ensure_cross_signed(server, tmp_path / "new.json", password="wrong", reset=True)
    assert raised.value.status == 401


async def test_signature_failures_in_a_200_answer_are_errors(tmp_path: Path) -> None:
    server = FakeHomeserver()
    server.reject_signatures = True
    with pytest.raises(CrossSigningError, match="M_INVALID_SIGNATURE"):
        await ensure_cross_signed(server, tmp_path / "keys.json", password=None)


async def test_device_keys_must_be_uploaded_first(tmp_path: Path) -> None:
    server = FakeHomeserver(device_uploaded=False)
    with pytest.raises(CrossSigningError, match="upload the device keys"):
        await ensure_cross_signed(server, tmp_path / "keys.json", password=None)
    assert server.calls == ["keys/query"]


async def test_rate_limits_are_waited_out(tmp_path: Path) -> None:
    server = FakeHomeserver()
    server.rate_limit_next = 2
    assert await ensure_cross_signed(server, tmp_path / "keys.json", password=None)
    assert server.calls[:3] == ["keys/query"] * 3
    assert _device_is_cross_signed(server)
