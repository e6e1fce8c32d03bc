"""Console auth (Kiali's token strategy): tokens, sessions, roles — pure, with explicit clocks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from trellis.console.auth import (
    AuthError,
    ConsoleKeys,
    Role,
    check_granted,
    check_write,
    issue_token,
    load_or_create_keys,
    open_session,
    parse_roles,
    read_session,
    verify_token,
)

NOW = 1_800_000_000.0


@pytest.fixture
def keys() -> ConsoleKeys:
    return ConsoleKeys.generate()


def test_token_round_trips_role_and_expiry(keys: ConsoleKeys) -> None:
    token = issue_token(keys, Role.EDIT, now=NOW, ttl=60)
    claims = verify_token(keys, token, now=NOW + 59)
    assert claims.role is Role.EDIT
    assert claims.expires_at == NOW + 60


def test_expired_token_is_refused_with_401(keys: ConsoleKeys) -> None:
    token = issue_token(keys, Role.VIEW, now=NOW, ttl=60)
    with pytest.raises(AuthError) as e:
        verify_token(keys, token, now=NOW + 60)
    assert e.value.status == 401


def test_token_signed_by_another_mesh_is_refused(keys: ConsoleKeys) -> None:
    token = issue_token(ConsoleKeys.generate(), Role.CLUSTER_ADMIN, now=NOW, ttl=60)
    with pytest.raises(AuthError):
        verify_token(keys, token, now=NOW)


def test_tampered_role_breaks_the_signature(keys: ConsoleKeys) -> None:
    import base64
    import json

    token = issue_token(keys, Role.VIEW, now=NOW, ttl=60)
    prefix, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["role"] = "cluster-admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthError):
        verify_token(keys, f"{prefix}.{forged}.{sig}", now=NOW)


@pytest.mark.parametrize("garbage", ["", "abc", "trellis..", "trellis.x.y", "Bearer x"])
def test_garbage_tokens_are_401(keys: ConsoleKeys, garbage: str) -> None:
    with pytest.raises(AuthError) as e:
        verify_token(keys, garbage, now=NOW)
    assert e.value.status == 401


def test_session_never_outlives_its_token(keys: ConsoleKeys) -> None:
    claims = verify_token(keys, issue_token(keys, Role.ADMIN, now=NOW, ttl=10), now=NOW)
    cookie = open_session(keys, claims, now=NOW, ttl=3600)
    assert read_session(keys, cookie, now=NOW + 9).role is Role.ADMIN
    with pytest.raises(AuthError):
        read_session(keys, cookie, now=NOW + 10)


def test_session_cookie_is_encrypted_and_expires(keys: ConsoleKeys) -> None:
    claims = verify_token(keys, issue_token(keys, Role.ADMIN, now=NOW, ttl=7200), now=NOW)
    cookie = open_session(keys, claims, now=NOW, ttl=3600)
    assert "admin" not in cookie  # not readable by the browser
    assert read_session(keys, cookie, now=NOW + 3599).role is Role.ADMIN
    with pytest.raises(AuthError) as e:
        read_session(keys, cookie, now=NOW + 3600)
    assert e.value.status == 401


def test_session_from_other_keys_or_tampered_is_401(keys: ConsoleKeys) -> None:
    claims = verify_token(keys, issue_token(keys, Role.ADMIN, now=NOW, ttl=7200), now=NOW)
    cookie = open_session(keys, claims, now=NOW, ttl=3600)
    for bad in (
        cookie[:-4] + "AAAA",
        open_session(ConsoleKeys.generate(), claims, now=NOW, ttl=60),
    ):
        with pytest.raises(AuthError):
            read_session(keys, bad, now=NOW)


def test_cluster_admin_is_always_granted() -> None:
    check_granted(Role.CLUSTER_ADMIN, frozenset())


@pytest.mark.parametrize("role", [Role.ADMIN, Role.EDIT, Role.VIEW])
def test_other_roles_need_the_operator_grant(role: Role) -> None:
    with pytest.raises(AuthError) as e:
        check_granted(role, frozenset())
    assert e.value.status == 403
    check_granted(role, frozenset({role}))


def test_view_is_read_only_edit_and_up_may_write() -> None:
    with pytest.raises(AuthError) as e:
        check_write(Role.VIEW)
    assert e.value.status == 403
    for role in (Role.EDIT, Role.ADMIN, Role.CLUSTER_ADMIN):
        check_write(role)


def test_parse_roles_rejects_unknown_names() -> None:
    assert parse_roles("admin, view,") == {Role.ADMIN, Role.VIEW}
    assert parse_roles("") == frozenset()
    with pytest.raises(ValueError, match="superuser"):
        parse_roles("superuser")


def test_keys_file_is_private_and_stable(tmp_path: Path) -> None:
    first = load_or_create_keys(tmp_path)
    assert stat.S_IMODE((tmp_path / "console.key").stat().st_mode) == 0o600
    assert load_or_create_keys(tmp_path) == first


def test_up_options_become_supervisor_arguments() -> None:
    from trellis.cli.console_options import console_argv
    from trellis.errors import TrellisError

    assert console_argv(True, "view, edit") == ["--console-roles", "edit,view"]
    assert console_argv(True, "") == ["--console-roles", ""]
    assert console_argv(False, "") == ["--no-console"]
    with pytest.raises(TrellisError, match="superuser"):
        console_argv(True, "superuser")
    with pytest.raises(TrellisError, match="no effect"):
        console_argv(False, "view")
