"""SPIFFE IDs and join tokens: a token grants one identity, until it expires, to its mesh only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.ca.errors import InvalidSpiffeId, InvalidToken
from trellis.ca.identity import (
    Identity,
    JoinTokenIssuer,
    OneTimeTokens,
    new_token_key,
    parse_spiffe_id,
    spiffe_id,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
segment = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}", fullmatch=True)


def test_spiffe_id_is_istios_workload_form() -> None:
    assert spiffe_id("cluster.local", "default", "bookinfo-productpage") == (
        "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    )


@given(td=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True), ns=segment, sa=segment)
def test_spiffe_id_round_trips(td: str, ns: str, sa: str) -> None:
    parsed = parse_spiffe_id(spiffe_id(td, ns, sa))
    assert (parsed.trust_domain, parsed.namespace, parsed.service_account) == (td, ns, sa)
    assert parsed.uri == spiffe_id(td, ns, sa)


@pytest.mark.parametrize(
    "uri",
    [
        "https://cluster.local/ns/a/sa/b",
        "spiffe://cluster.local/ns/a",
        "spiffe://cluster.local/sa/b/ns/a",
        "spiffe://cluster.local/ns/a/sa/b/extra",
        "spiffe://cluster.local/ns//sa/b",
        "spiffe://Cluster.Local/ns/a/sa/b",
        "spiffe://cluster.local/ns/../sa/b",
    ],
)
def test_parse_spiffe_id_refuses_other_forms(uri: str) -> None:
    with pytest.raises(InvalidSpiffeId):
        parse_spiffe_id(uri)


def test_spiffe_id_refuses_a_slash_in_a_name() -> None:
    with pytest.raises(InvalidSpiffeId, match="namespace"):
        spiffe_id("cluster.local", "a/sa/admin", "b")


@pytest.fixture
def issuer() -> JoinTokenIssuer:
    return JoinTokenIssuer(new_token_key())


def mint(issuer: JoinTokenIssuer, ttl: timedelta = timedelta(hours=1)) -> str:
    return issuer.mint(namespace="default", service_account="reviews", workload="reviews-v1",
                       now=NOW, ttl=ttl)  # fmt: skip


def test_valid_token_grants_its_bound_identity(issuer: JoinTokenIssuer) -> None:
    identity = issuer.verify(mint(issuer), now=NOW + timedelta(minutes=59))
    assert (identity.namespace, identity.service_account, identity.workload) == (
        "default", "reviews", "reviews-v1")  # fmt: skip
    assert identity.expires == NOW + timedelta(hours=1)
    assert identity.spiffe_id() == "spiffe://cluster.local/ns/default/sa/reviews"


def test_expired_token_is_refused(issuer: JoinTokenIssuer) -> None:
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(mint(issuer), now=NOW + timedelta(hours=1))


def test_tampered_payload_is_refused(issuer: JoinTokenIssuer) -> None:
    prefix, body, mac = mint(issuer).split(".")
    other = issuer.mint(namespace="kube-system", service_account="admin", workload="x", now=NOW)
    forged = f"{prefix}.{other.split('.')[1]}.{mac}"
    with pytest.raises(InvalidToken, match="signature"):
        issuer.verify(forged, now=NOW)
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(InvalidToken):
        issuer.verify(f"{prefix}.{flipped}.{mac}", now=NOW)


def test_token_from_another_mesh_is_refused(issuer: JoinTokenIssuer) -> None:
    stranger = JoinTokenIssuer(new_token_key())
    with pytest.raises(InvalidToken, match="another mesh"):
        issuer.verify(mint(stranger), now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "tj1.x", "tj1..", "tj2.e30.AAAA", "tj1.!!!.AAAA"])
def test_malformed_token_is_refused(issuer: JoinTokenIssuer, token: str) -> None:
    with pytest.raises(InvalidToken):
        issuer.verify(token, now=NOW)


def test_identity_check_refuses_a_different_identity(issuer: JoinTokenIssuer) -> None:
    identity = issuer.verify(mint(issuer), now=NOW)
    identity.check(namespace="default", service_account="reviews", workload="reviews-v1")
    with pytest.raises(InvalidToken, match="service account 'reviews', not 'ratings'"):
        identity.check(service_account="ratings")
    with pytest.raises(InvalidToken, match="namespace"):
        identity.check(namespace="prod")
    with pytest.raises(InvalidToken, match="workload"):
        identity.check(workload="reviews-v2")


def test_mint_refuses_names_that_could_not_be_a_spiffe_id(issuer: JoinTokenIssuer) -> None:
    with pytest.raises(InvalidSpiffeId):
        issuer.mint(namespace="a/b", service_account="c", workload="w", now=NOW)


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        JoinTokenIssuer(b"short")


def test_one_time_guard_accepts_a_token_once(issuer: JoinTokenIssuer) -> None:
    guard = OneTimeTokens()
    identity = issuer.verify(mint(issuer), now=NOW)
    guard.redeem(identity, now=NOW)
    with pytest.raises(InvalidToken, match="already used"):
        guard.redeem(identity, now=NOW + timedelta(minutes=1))
    guard.redeem(issuer.verify(mint(issuer), now=NOW), now=NOW)  # another token is fine


def test_one_time_guard_forgets_expired_tokens() -> None:
    guard = OneTimeTokens()
    old = Identity("default", "a", "w", NOW, "t1")
    guard.redeem(old, now=NOW - timedelta(seconds=1))
    guard.redeem(Identity("default", "a", "w", NOW + timedelta(hours=1), "t2"), now=NOW)
    assert "t1" not in guard._used
