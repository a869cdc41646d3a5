"""Hostile input gets a 4xx with a reason, never a 5xx; the schema holds under fuzzing;
200 clients at once get every order right."""

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.shop import Shop, check_books, open_shop
from tests.e2e.system import System


@pytest.fixture(scope="module")
def shop(system: System) -> Shop:
    return open_shop(system)


def post_raw(system: System, shop: Shop, content: bytes) -> httpx.Response:
    return httpx.post(
        f"{system.api}/orders/create_order",
        content=content,
        headers={"Authorization": f"Bearer {shop.token}", "Content-Type": "application/json"},
        timeout=30,
    )


def item(**changes: Any) -> dict[str, Any]:
    return {"product_id": "p1", "quantity": 1} | changes


HOSTILE: list[tuple[str, Any]] = [
    ("null body", None),
    ("a list for a body", [1, 2, 3]),
    ("a string for items", {"items": "everything"}),
    ("a string for a quantity", {"items": [item(quantity="three")]}),
    ("a fraction for a quantity", {"items": [item(quantity=1.5)]}),
    ("a negative quantity", {"items": [item(quantity=-1)]}),
    ("a huge quantity", {"items": [item(quantity=10**30)]}),
    ("a huge price", {"items": [item(unit_price="1e400")]}),
    ("a float overflowing", {"items": [item(unit_price=1e308)]}),
    ("a negative price", {"items": [item(unit_price="-5.00")]}),
    ("NaN for a price", {"items": [item(unit_price="NaN")]}),
    ("a long unicode address", {"delivery_address": "ü🚀" * 5000}),
    ("a control character in a product id", {"items": [item(product_id="p\u0000")]}),
    ("10,000 items", {"items": [item()] * 10_000}),
    ("an object for an email", {"vendor_email": {"$ne": ""}}),
]


@pytest.mark.parametrize(("what", "change"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_get_a_4xx_with_a_reason(
    system: System, shop: Shop, what: str, change: Any
) -> None:
    body = shop.body([("apple", 1)]) | change if isinstance(change, dict) else change
    response = post_raw(system, shop, json.dumps(body).encode())
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
    assert response.json()["detail"]


def test_a_2mb_body_is_413_even_without_a_length(system: System, shop: Shop) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"description": "'
        for _ in range(32):
            yield b"x" * 65536
        yield b'"}'

    response = httpx.post(
        f"{system.api}/orders/create_order",
        content=chunks(),  # chunked: no Content-Length to trust
        headers={"Authorization": f"Bearer {shop.token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413


def test_fuzzing_the_openapi_schema_finds_no_5xx_and_no_answer_off_the_schema(
    system: System, shop: Shop
) -> None:
    schema = schemathesis.openapi.from_url(f"{system.api}/openapi.json")
    headers = {"Authorization": f"Bearer {shop.token}"}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/orders/create_order", "/sagas/{saga_id}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.headers = {**(case.headers or {}), **headers}
            response = case.call(base_url=system.api, timeout=30)
            case.validate_response(response, checks=checks)

        fuzz()


@pytest.mark.slow
def test_two_hundred_clients_at_once_get_every_order_right(system: System) -> None:
    with system.extra_api("api-load", SAGA_RATE_LIMIT="100000/second") as base:
        shop = open_shop(system, balance="1000.00")
        system.cli("stock", "set", shop.products["apple"], "--quantity", "150", "--price", "5.00")

        def client(_: int) -> httpx.Response:
            return httpx.post(
                f"{base}/orders/create_order",
                json=shop.body([("apple", 1)]),
                headers={"Authorization": f"Bearer {shop.token}"},
                timeout=60,
            )

        with ThreadPoolExecutor(max_workers=200) as pool:
            answers = list(pool.map(client, range(200)))
        assert [a.status_code for a in answers] == [202] * 200
        ids = [a.json()["saga_id"] for a in answers]
        assert len(set(ids)) == 200
        sagas = [system.wait_terminal(shop.token, s, within=90) for s in ids]
        # 150 apples: 150 complete, 50 find none left; nothing doubled, nothing lost.
        assert [s["status"] for s in sagas].count("completed") == 150
        check_books(shop, sagas, stock=150, balance="1000.00")
