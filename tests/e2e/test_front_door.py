"""The front door's refusals: 401, 403, 404, 422 and 503, each with a reason, and its probes."""

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import jwt
import pytest
import redis

from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System, free_port
from tests.servers import REDIS_URL


@pytest.fixture(scope="module")
def shop(system: System) -> Shop:
    return open_shop(system)


def post(system: System, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{system.api}/orders/create_order", json=body, headers=headers, timeout=10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}, bearer("not-a-token")],
    ids=["no header", "not bearer", "empty token", "garbage token"],
)
def test_no_valid_token_is_401(system: System, shop: Shop, headers: dict[str, str]) -> None:
    response = post(system, shop.body([("apple", 1)]), headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"]


def test_an_expired_token_is_401(system: System, shop: Shop) -> None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    kid = client.get(f"{system.namespace}:auth:key")
    keys = client.hgetall(f"{system.namespace}:auth:keys")
    client.close()
    assert kid, "the auth service keeps its keys in Redis"
    now = int(time.time())
    expired = jwt.encode(
        {
            "sub": shop.customer,
            "roles": ["customer"],
            "iss": f"saga-auth:{system.namespace}",
            "iat": now - 7200,
            "exp": now - 3600,
            "jti": uuid.uuid4().hex,
        },
        json.loads(keys[kid])["secret"],
        algorithm="HS256",
        headers={"kid": kid},
    )
    response = post(system, shop.body([("apple", 1)]), bearer(expired))
    assert (response.status_code, response.json()["detail"]) == (401, "invalid or expired token")


def test_a_wrong_password_gets_no_token(system: System, shop: Shop) -> None:
    response = httpx.post(
        f"{system.auth}/auth/token", json={"email": shop.customer, "password": "wrong"}, timeout=10
    )
    assert response.status_code == 401
    unknown = httpx.post(
        f"{system.auth}/auth/token",
        json={"email": "nobody@example.com", "password": "x"},
        timeout=10,
    )
    assert unknown.status_code == 401


def test_verify_answers_who_the_token_belongs_to(system: System, shop: Shop) -> None:
    response = httpx.post(f"{system.auth}/auth/verify", json={"token": shop.token}, timeout=10)
    body = response.json()
    assert (body["email"], body["roles"]) == (shop.customer, ["customer"])
    # As the API writes times: ISO 8601 in UTC, ending in Z.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["expires_at"]), body
    expires_at = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert time.time() < expires_at <= time.time() + 3600  # the token's lifetime, an hour


def test_ordering_for_someone_else_is_403(system: System, shop: Shop) -> None:
    body = shop.body([("apple", 1)], user_email="mallory@example.com")
    response = post(system, body, bearer(shop.token))
    assert response.status_code == 403
    assert "token owner" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vendor_email": None}, "vendor_email"),
        ({"vendor_email": "not-an-email"}, "vendor_email"),
        ({"payment_method": "Bitcoin"}, "payment_method"),
        ({"items": []}, "items"),
        ({"items": [{"product_id": "p", "quantity": 0}]}, "quantity"),
        ({"items": [{"product_id": "p", "quantity": -3}]}, "quantity"),
        ({"items": [{"product_id": "p", "quantity": 1, "unit_price": "1.234"}]}, "unit_price"),
        ({"items": [{"product_id": "p", "quantity": 1}] * 101}, "items"),
        ({"delivery_address": ""}, "delivery_address"),
    ],
)
def test_a_bad_body_is_422_naming_the_field(
    system: System, shop: Shop, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in (shop.body([("apple", 1)]) | change).items() if v is not None}
    response = post(system, body, bearer(shop.token))
    assert response.status_code == 422
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}


@pytest.mark.parametrize("written", ["1e2", "5E0", "0.5e1", "5.001", "-5.00", "1e400"])
def test_a_price_written_as_a_json_number_is_judged_as_written(
    system: System, shop: Shop, written: str
) -> None:
    # JSON parsers read 1e2 as the float 100.0; the docs say money has no exponent.
    body = json.dumps(shop.body([("apple", 1)]))
    raw = body.replace('"quantity": 1}', f'"quantity": 1, "unit_price": {written}}}')
    assert written in raw
    response = httpx.post(
        f"{system.api}/orders/create_order",
        content=raw.encode(),
        headers={**bearer(shop.token), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "items", 0, "unit_price"], problem


def test_a_price_written_as_a_plain_json_number_is_read_exactly(system: System, shop: Shop) -> None:
    for written in ("5", "5.0", "5.00"):
        body = json.dumps(shop.body([("apple", 1)]))
        raw = body.replace('"quantity": 1}', f'"quantity": 1, "unit_price": {written}}}')
        response = httpx.post(
            f"{system.api}/orders/create_order",
            content=raw.encode(),
            headers={**bearer(shop.token), "Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 202, (written, response.text)
        saga = system.wait_terminal(shop.token, response.json()["saga_id"])
        assert saga["status"] == "completed", (written, saga)  # the shop's price: 5.00


SECRET = "hunter2-do-not-echo"


@pytest.mark.parametrize(
    ("service", "path", "body"),
    [
        ("auth", "/auth/token", {"email": "ann@example.com", "password": SECRET * 60}),
        ("auth", "/auth/token", {"password": SECRET}),  # no email: the body is the input
        ("auth", "/auth/token", {"email": ["ann"], "password": SECRET}),
        ("auth", "/auth/verify", {"tokn": SECRET}),
        ("auth", "/auth/verify", {"token": [SECRET]}),
        ("api", "/orders/create_order", {"password": SECRET, "token": SECRET}),
        ("api", "/sagas", {"type": "order", "token": SECRET}),
        ("api", "/sagas", {"type": "order", "input": {"vendor": SECRET, "items": [SECRET]}}),
        ("api", "/definitions", [SECRET]),
    ],
    ids=[
        "token: a password too long",
        "token: no email",
        "token: an email not a string",
        "verify: no token",
        "verify: a token not a string",
        "order: no fields but secrets",
        "saga: no input",
        "saga: an input the schema refuses",
        "definition: not an object",
    ],
)
def test_no_422_echoes_what_was_sent(
    system: System, shop: Shop, service: str, path: str, body: Any
) -> None:
    base = system.api if service == "api" else system.auth
    admin = open_shop(system, role="admin")  # may apply definitions, and start any saga
    response = httpx.post(f"{base}{path}", json=body, headers=bearer(admin.token), timeout=10)
    assert response.status_code == 422, response.text
    assert SECRET not in response.text and admin.token not in response.text
    # Each problem is its place, what is wrong and its kind, as docs/http-api.md says.
    assert all(set(problem) == {"loc", "msg", "type"} for problem in response.json()["detail"])


def test_malformed_json_is_422(system: System, shop: Shop) -> None:
    response = httpx.post(
        f"{system.api}/orders/create_order",
        content=b'{"items": [',
        headers={**bearer(shop.token), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("api", "/orders/create_order"),
        ("api", "/sagas"),
        ("api", "/definitions"),
        ("auth", "/auth/token"),
        ("auth", "/auth/verify"),
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_sent_as_another_media_type_is_415(
    system: System, shop: Shop, service: str, path: str, content_type: str
) -> None:
    base = system.api if service == "api" else system.auth
    body = {"items": [], "type": "order", "input": {}, "email": "a@b.c", "token": "x"}
    response = httpx.post(
        f"{base}{path}",
        content=json.dumps(body).encode(),
        headers={**bearer(shop.token), "Content-Type": content_type},
        timeout=10,
    )
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    assert content_type in response.json()["detail"]


def test_a_json_media_type_with_parameters_or_a_suffix_is_json(system: System, shop: Shop) -> None:
    for content_type in ("application/json; charset=utf-8", "application/problem+json"):
        response = httpx.post(
            f"{system.api}/sagas",
            content=b'{"type": "nothing", "input": {}}',
            headers={**bearer(shop.token), "Content-Type": content_type},
            timeout=10,
        )
        assert response.status_code == 404, response.text  # read, and the type is unknown


def test_a_body_with_no_content_type_at_all_is_read_as_json(system: System, shop: Shop) -> None:
    def send(base: str, path: str, body: Any) -> httpx.Response:
        request = httpx.Request(
            "POST", f"{base}{path}", content=json.dumps(body).encode(), headers=bearer(shop.token)
        )
        assert "content-type" not in request.headers
        return httpx.Client(timeout=10).send(request)

    order = send(system.api, "/orders/create_order", shop.body([("apple", 1)]))
    assert order.status_code == 202, order.text
    started = send(system.api, "/sagas", {"type": "nothing", "input": {}})
    assert started.status_code == 404, started.text  # read, and the type is unknown
    applied = send(system.api, "/definitions", {"name": "x"})
    assert applied.status_code == 403, applied.text  # read, and the caller is no admin
    token = send(system.auth, "/auth/token", {"email": shop.customer, "password": "correct-horse"})
    assert token.status_code == 200, token.text
    verified = send(system.auth, "/auth/verify", {"token": token.json()["access_token"]})
    assert verified.json()["email"] == shop.customer


def test_other_customers_sagas_are_not_found_but_admins_see_them(
    system: System, shop: Shop
) -> None:
    saga = shop.order([("apple", 1)])
    stranger = open_shop(system)
    assert system.saga(stranger.token, saga["saga_id"]).status_code == 404
    events = system.api_get(stranger.token, f"/sagas/{saga['saga_id']}/events")
    assert events.status_code == 404
    admin = open_shop(system, role="admin")
    assert system.saga(admin.token, saga["saga_id"]).json()["status"] == "completed"
    assert system.saga(shop.token, f"nope-{uuid.uuid4().hex}").status_code == 404


def test_health_and_ready(system: System) -> None:
    assert httpx.get(f"{system.api}/health", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{system.api}/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "rabbitmq": "ok", "auth": "ok"}


def test_an_unreachable_auth_service_is_503_not_401(system: System, shop: Shop) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with system.extra_api("api-without-auth", SAGA_AUTH_URL=nowhere) as base:
        ready = httpx.get(f"{base}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["auth"] == "unreachable"
        assert "auth" in ready.json()["detail"]
        response = httpx.post(
            f"{base}/orders/create_order",
            json=shop.body([("apple", 1)]),
            headers=bearer(shop.token),
            timeout=10,
        )
        assert response.status_code == 503
        assert "auth service unreachable" in response.json()["detail"]
        assert response.headers["Retry-After"]


def test_an_idempotency_key_starts_one_saga_however_often_it_is_sent(
    system: System, shop: Shop
) -> None:
    body = shop.body([("apple", 1)])
    headers = {**bearer(shop.token), "Idempotency-Key": f"order-{uuid.uuid4().hex}"}
    first = post(system, body, headers)
    again = post(system, body, headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["saga_id"] == again.json()["saga_id"]
    with ThreadPoolExecutor(max_workers=10) as pool:
        racing_headers = {**bearer(shop.token), "Idempotency-Key": f"race-{uuid.uuid4().hex}"}
        answers = list(pool.map(lambda _: post(system, body, racing_headers), range(10)))
    assert sorted(a.status_code for a in answers) == [200] * 9 + [202]
    assert len({a.json()["saga_id"] for a in answers}) == 1
    saga = system.wait_terminal(shop.token, answers[0].json()["saga_id"])
    orders = [o for o in system.cli_json("order", "list") if o["saga_id"] == saga["saga_id"]]
    assert len(orders) == 1


def test_an_idempotency_key_reused_with_another_body_is_422(system: System, shop: Shop) -> None:
    headers = {**bearer(shop.token), "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    assert post(system, shop.body([("apple", 1)]), headers).status_code == 202
    response = post(system, shop.body([("apple", 2)]), headers)
    assert response.status_code == 422
    [problem] = response.json()["detail"]  # as every 422: a list of problems with places
    assert problem["loc"] == ["header", "Idempotency-Key"] and "different body" in problem["msg"]


def test_a_customer_lists_only_their_own_sagas(system: System, shop: Shop) -> None:
    mine = shop.order([("apple", 1)])
    other = open_shop(system)
    theirs = other.order([("apple", 1)])
    listed = system.api_get(shop.token, "/sagas?status=completed").json()
    ids = {s["saga_id"] for s in listed}
    assert mine["saga_id"] in ids and theirs["saga_id"] not in ids
    admin = open_shop(system, role="admin")
    everyone = {s["saga_id"] for s in system.api_get(admin.token, "/sagas?limit=1000").json()}
    assert {mine["saga_id"], theirs["saga_id"]} <= everyone
    assert system.api_get(shop.token, "/sagas?status=sleeping").status_code == 422


def test_a_body_over_the_limit_is_413(system: System, shop: Shop) -> None:
    huge = {**shop.body([("apple", 1)]), "description": "x" * (2 * 1024 * 1024)}
    response = post(system, huge, bearer(shop.token))
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_too_many_orders_too_fast_is_429_with_retry_after(system: System, shop: Shop) -> None:
    with system.extra_api("api-rate-limited", SAGA_RATE_LIMIT="3/minute") as base:
        limited = open_shop(system)

        def order(customer: Shop) -> httpx.Response:
            return httpx.post(
                f"{base}/orders/create_order",
                json=customer.body([("apple", 1)]),
                headers=bearer(customer.token),
                timeout=10,
            )

        codes = [order(limited) for _ in range(4)]
        assert [c.status_code for c in codes] == [202, 202, 202, 429]
        assert int(codes[-1].headers["Retry-After"]) >= 1
        assert order(shop).status_code == 202  # someone else has a bucket of their own
