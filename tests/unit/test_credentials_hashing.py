"""Appliance credentials: high entropy, salted and peppered scrypt, constant-time verification."""

from __future__ import annotations

import hmac

import pytest

from shared.appliances import credentials
from shared.appliances.credentials import CredentialHasher, new_credential, parse_credential
from shared.domain.errors import Unauthorized

PEPPER = b"test-pepper-0123456789abcdef"


@pytest.fixture(scope="module")
def hasher() -> CredentialHasher:
    return CredentialHasher(PEPPER, n=2**12)


def test_credential_carries_the_id_and_256_bits_of_secret() -> None:
    credential = new_credential("appl-123")
    parsed = parse_credential(credential)
    assert parsed.appliance_id == "appl-123"
    assert len(parsed.secret) >= 43  # 32 bytes, base64url
    assert new_credential("appl-123") != credential


@pytest.mark.parametrize(
    "bad", ["", "no-dot", "appl-1.short", ".secretsecretsecretsecretsecretsecretsecretsecret"]
)
def test_malformed_credentials_are_unauthorized(bad: str) -> None:
    with pytest.raises(Unauthorized):
        parse_credential(bad)


def test_verify_accepts_the_right_secret_only(hasher: CredentialHasher) -> None:
    stored = hasher.hash("s3cret-value")
    assert hasher.verify("s3cret-value", stored)
    assert not hasher.verify("s3cret-valuf", stored)
    assert not hasher.verify("", stored)


def test_hash_is_salted_and_does_not_contain_the_secret(hasher: CredentialHasher) -> None:
    first, second = hasher.hash("same-secret"), hasher.hash("same-secret")
    assert first != second
    assert "same-secret" not in first
    scheme, n, r, p, _salt, _digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**12), "8", "1")


def test_pepper_is_part_of_the_hash(hasher: CredentialHasher) -> None:
    other = CredentialHasher(b"another-pepper-0123456789", n=2**12)
    assert not other.verify("s3cret", hasher.hash("s3cret"))


def test_cost_parameters_are_read_from_the_stored_hash(hasher: CredentialHasher) -> None:
    stronger = CredentialHasher(PEPPER, n=2**13)
    assert stronger.verify("s3cret", hasher.hash("s3cret"))


def test_unknown_appliance_is_verified_against_a_decoy(hasher: CredentialHasher) -> None:
    assert not hasher.verify("anything", None)


@pytest.mark.parametrize("corrupt", ["", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AA$AA", "scrypt$16384$8$1"])
def test_corrupt_stored_hashes_never_verify(hasher: CredentialHasher, corrupt: str) -> None:
    assert not hasher.verify("s3cret", corrupt)


def test_comparison_is_constant_time(hasher: CredentialHasher, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(credentials.hmac, "compare_digest", spy)
    stored = hasher.hash("s3cret")
    assert hasher.verify("s3cret", stored)
    assert not hasher.verify("wrong", stored)
    assert len(calls) == 2 and all(len(a) == len(b) == 32 for a, b in calls)


def test_short_pepper_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        CredentialHasher(b"short")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _counting_scrypt(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = credentials.hashlib.scrypt

    def spy(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(credentials.hashlib, "scrypt", spy)
    return calls


def test_a_verified_credential_is_trusted_for_a_while_without_another_scrypt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every appliance call authenticates: at fleet scale one scrypt per call was a worker's largest CPU
    cost. A success is remembered for the TTL, then verified afresh."""
    clock = _Clock()
    hasher = CredentialHasher(PEPPER, n=2**12, verified_ttl=300, clock=clock)
    stored = hasher.hash("s3cret")
    calls = _counting_scrypt(monkeypatch)
    assert all(hasher.verify("s3cret", stored) for _ in range(5))
    assert len(calls) == 1
    clock.now += 301
    assert hasher.verify("s3cret", stored)
    assert len(calls) == 2


def test_failures_are_never_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = CredentialHasher(PEPPER, n=2**12, clock=_Clock())
    stored = hasher.hash("s3cret")
    assert hasher.verify("s3cret", stored)
    calls = _counting_scrypt(monkeypatch)
    assert not any(hasher.verify("wrong", stored) for _ in range(3))
    assert not hasher.verify("s3cret", None)  # an unknown appliance: the decoy, every time
    assert len(calls) == 4


def test_a_new_credential_hash_is_verified_afresh() -> None:
    """Re-registration stores a new hash: the old secret, remembered against the old hash, no longer passes."""
    hasher = CredentialHasher(PEPPER, n=2**12, clock=_Clock())
    old = hasher.hash("old-secret")
    assert hasher.verify("old-secret", old)
    new = hasher.hash("new-secret")
    assert not hasher.verify("old-secret", new)
    assert hasher.verify("new-secret", new)
