"""Sign-in that holds under attack, on the real processes: throttled with 429 and
Retry-After before any hash, tokens revoked (by the owner, an admin or the CLI) and
refused by the API within the cache's bound, keys rotated with both keys' tokens valid."""

import json
import re
import time

import httpx
import jwt

from tests.e2e.shop import open_shop
from tests.e2e.system import System

# SAGA_AUTH_CACHE_TTL's default: how long the API may still take a revoked token.
CACHE_BOUND = 5.0


def metric(base: str, name: str) -> float:
    """A counter's value on a process's /metrics (0 if not yet counted)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def sign_in(base: str, email: str, password: str) -> httpx.Response:
    return httpx.post(f"{base}/auth/token", json={"email": email, "password": password}, timeout=10)


def test_failed_sign_ins_are_throttled_with_retry_after_before_any_hash(system: System) -> None:
    shop = open_shop(system)  # its customer waits a minute after this
    settings = {"SAGA_AUTH_ACCOUNT_FAILURES": "3", "SAGA_AUTH_DELAY": "1m"}
    with system.extra_auth("auth-throttled", **settings) as auth:
        hashed = "saga_auth_password_hashes_total"
        for _ in range(3):
            assert sign_in(auth, shop.customer, "wrong-password-1").status_code == 401
        assert metric(auth, hashed) == 3
        for password in ("wrong-password-2", "correct-horse"):
            throttled = sign_in(auth, shop.customer, password)
            assert throttled.status_code == 429
            assert throttled.headers["Retry-After"] == "60"
        assert metric(auth, hashed) == 3  # the throttled tries hashed nothing
        assert metric(auth, 'saga_auth_sign_ins_total{outcome="throttled"}') == 2
        # Shared by every replica: the system's own auth service waits too.
        assert sign_in(system.auth, shop.customer, "correct-horse").status_code == 429
    # The audit lines name the outcomes, never a password.
    log = (system.logs / "auth-throttled.log").read_text()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    outcomes = [e["outcome"] for e in events if e.get("event") == "sign-in"]
    assert outcomes == ["failure"] * 3 + ["throttled"] * 2
    assert "wrong-password" not in log and "correct-horse" not in log


def refused_by_the_api_within_the_bound(system: System, token: str) -> None:
    """Poll the API with the token until it answers 401; fail past the cache's bound."""
    deadline = time.monotonic() + CACHE_BOUND + 5  # the bound, and time to ask
    while (status := system.api_get(token, "/sagas").status_code) == 200:
        assert time.monotonic() < deadline, "the API still takes a revoked token"
        time.sleep(0.1)
    assert status == 401


def test_a_token_revoked_by_its_owner_is_refused_by_the_api(system: System) -> None:
    shop = open_shop(system)
    other = system.token(shop.customer)
    assert system.api_get(shop.token, "/sagas").status_code == 200  # cached by the API now
    revoked = httpx.post(
        f"{system.auth}/auth/revoke",
        json={},
        headers={"Authorization": f"Bearer {shop.token}"},
        timeout=10,
    )
    assert revoked.json() == {"revoked": "token", "email": shop.customer}
    refused_by_the_api_within_the_bound(system, shop.token)
    assert system.api_get(other, "/sagas").status_code == 200


def test_saga_auth_revoke_refuses_every_token_of_the_user(system: System) -> None:
    shop = open_shop(system)
    tokens = [shop.token, system.token(shop.customer)]
    for token in tokens:
        assert system.api_get(token, "/sagas").status_code == 200
    counted = 'saga_auth_revocations{scope="all"}'
    before = metric(system.auth, counted)
    done = system.cli_json("auth", "revoke", shop.customer.upper())
    assert done == {"revoked": "all", "email": shop.customer}
    assert metric(system.auth, counted) == before + 1  # the command's, on the service's
    for token in tokens:
        refused_by_the_api_within_the_bound(system, token)


def test_saga_auth_revoke_names_an_unknown_user(system: System) -> None:
    result = system.cli("auth", "revoke", "nobody@example.com", check=False)
    assert result.returncode == 1
    assert "no user nobody@example.com" in result.stderr


def test_tokens_of_both_keys_are_taken_across_a_rotation(system: System) -> None:
    shop = open_shop(system)
    before = shop.token
    rotations = metric(system.auth, "saga_auth_key_rotations")
    rotated = system.cli_json("auth", "rotate-key")
    assert metric(system.auth, "saga_auth_key_rotations") == rotations + 1
    after = system.token(shop.customer)
    assert jwt.get_unverified_header(before)["kid"] == rotated["retired"]
    assert jwt.get_unverified_header(after)["kid"] == rotated["kid"]
    for token in (before, after):
        assert system.api_get(token, "/sagas").status_code == 200
        verified = httpx.post(f"{system.auth}/auth/verify", json={"token": token}, timeout=10)
        assert verified.json()["email"] == shop.customer


def test_rotate_key_refuses_while_a_fixed_key_is_set(system: System) -> None:
    result = system.cli("auth", "rotate-key", check=False, SAGA_AUTH_SECRET="s" * 48)
    assert result.returncode == 1
    assert "SAGA_AUTH_SECRET" in result.stderr
