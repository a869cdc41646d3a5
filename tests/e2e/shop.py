"""A customer, a vendor and products of their own, so that tests do not collide."""

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from saga.auth.users import UserStore
from saga.connections import redis_client
from saga.settings import Settings
from services.order import OrderService
from services.payment import PaymentService
from services.stock import StockService
from tests.e2e.system import System


@dataclass
class Shop:
    """One customer, one vendor and some products of their own, so tests do not collide."""

    system: System
    customer: str
    vendor: str
    token: str
    products: dict[str, str]

    def place(self, wanted: list[tuple[str, int]], **changes: Any) -> str:
        """Place an order; its saga id."""
        response = self.system.place_order(self.token, self.body(wanted, **changes))
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "running"
        assert accepted["links"] == {"self": f"/sagas/{accepted['saga_id']}"}
        return str(accepted["saga_id"])

    def order(self, wanted: list[tuple[str, int]], **changes: Any) -> dict[str, Any]:
        """Place an order and wait until its saga is terminal."""
        return self.system.wait_terminal(self.token, self.place(wanted, **changes))

    def body(self, wanted: list[tuple[str, int]], **changes: Any) -> dict[str, Any]:
        return {
            "user_email": self.customer,
            "vendor_email": self.vendor,
            "delivery_address": "1 Main Street, Springfield",
            "description": "e2e",
            "items": [{"product_id": self.products[p], "quantity": q} for p, q in wanted],
            "payment_method": "Credit Card",
        } | changes

    def stock(self, product: str) -> dict[str, Any]:
        return dict(self.system.cli_json("stock", "show", self.products[product]))

    def account(self) -> dict[str, Any]:
        return dict(self.system.cli_json("payment", "show", self.customer))


def stocked_shop(system: System, *, apples: int, balance: str) -> Shop:
    """A shop with `apples` apples at 5.00 and a customer with `balance`."""
    shop = open_shop(system, balance=balance)
    system.cli("stock", "set", shop.products["apple"], "--quantity", str(apples), "--price", "5.00")
    return shop


class Customers:
    """Orders of one apple each, placed from a thread every 30 ms while it runs, until
    `upto` were accepted: the saga ids of those answered 202, the status of those
    answered otherwise, and how many got no answer at all."""

    def __init__(self, shop: Shop, *, upto: int) -> None:
        self.shop, self.upto = shop, upto
        self.accepted: list[str] = []
        self.refused: list[int] = []
        self.unanswered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._place, name="customers")

    def __enter__(self) -> "Customers":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self, *, within: float = 30) -> None:
        """Place no more orders (the one under way is answered first)."""
        self._stop.set()
        self._thread.join(timeout=within)

    def wait_until_done(self, *, within: float) -> None:
        """Wait until `upto` were accepted, or `within` seconds; then stop."""
        self._thread.join(timeout=within)
        self.stop()

    def _place(self) -> None:
        system, shop = self.shop.system, self.shop
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set() and len(self.accepted) < self.upto:
                try:
                    response = client.post(
                        f"{system.api}/orders/create_order",
                        json=shop.body([("apple", 1)]),
                        headers={"Authorization": f"Bearer {shop.token}"},
                    )
                except httpx.HTTPError:
                    self.unanswered += 1
                    time.sleep(0.1)
                    continue
                if response.status_code == 202:
                    self.accepted.append(response.json()["saga_id"])
                else:
                    self.refused.append(response.status_code)
                time.sleep(0.03)

    def check_no_other_saga_started(self) -> None:
        """Every saga of the namespace is one answered 202, but for as many as got no
        answer (those may have started one): an order refused started none."""
        listed = {s["saga_id"] for s in self.shop.system.cli_json("list", "--limit", "10000")}
        others = listed - set(self.accepted)
        assert len(others) <= self.unanswered, (others, self.refused, self.unanswered)


def open_shop(
    system: System, *, balance: str = "100.00", role: str | None = None, via_cli: bool = False
) -> Shop:
    """A shop of the test's own: two products, a customer with `balance`, a vendor.

    Seeded with the services' own operator calls (what `saga stock set` and its kin run),
    since a CLI process per call made setting up dominate the suite; `via_cli` seeds it
    the way a user does, through `saga`.
    """
    tag = uuid.uuid4().hex[:8]
    customer, vendor = f"ann-{tag}@example.com", f"shop-{tag}@example.com"
    products = {"apple": f"apple-{tag}", "pear": f"pear-{tag}"}
    roles = [role] if role else []
    if via_cli:
        system.cli("stock", "set", products["apple"], "--quantity", "10", "--price", "5.00")
        system.cli("stock", "set", products["pear"], "--quantity", "2", "--price", "12.50")
        system.cli("payment", "deposit", customer, balance)
        system.cli("order", "vendor", "add", vendor)
        extra = [arg for r in roles for arg in ("--role", r)]
        system.cli("auth", "add-user", customer, "--password", "correct-horse", *extra)
    else:
        asyncio.run(_seed(system, products, customer, vendor, Decimal(balance), roles))
    return Shop(system, customer, vendor, system.token(customer), products)


async def _seed(
    system: System,
    products: dict[str, str],
    customer: str,
    vendor: str,
    balance: Decimal,
    roles: list[str],
) -> None:
    redis = redis_client(Settings(redis_url=system.redis_url))  # one Redis, or a cluster
    namespace = system.namespace
    try:
        stock = StockService(redis, namespace)
        await stock.set_product(products["apple"], quantity=10, price=Decimal("5.00"))
        await stock.set_product(products["pear"], quantity=2, price=Decimal("12.50"))
        await PaymentService(redis, namespace).deposit(customer, balance)
        await OrderService(redis, namespace).add_vendor(vendor)
        await UserStore(redis, namespace).add(customer, "correct-horse", roles)
    finally:
        await redis.aclose()


def check_books(shop: Shop, sagas: list[dict[str, Any]], *, stock: int, balance: str) -> None:
    """Nothing created or lost: stock and money add up, one charge and one order per
    completed saga, none net per compensated one. `sagas` are terminal, each ordering
    one apple with the shop's own customer; `stock` and `balance` are the opening ones."""
    assert all(s["status"] in ("completed", "compensated") for s in sagas), sagas
    completed = [s for s in sagas if s["status"] == "completed"]
    apple = shop.stock("apple")
    assert apple["reserved"] == 0
    assert apple["sold"] == len(completed)
    assert apple["available"] + apple["sold"] == stock
    account = shop.account()
    charged = Decimal(apple["price"]) * len(completed)
    assert Decimal(account["balance"]) == Decimal(balance) - charged
    for saga in sagas:
        entries = [e for e in account["ledger"] if e["saga_id"] == saga["saga_id"]]
        net = sum(1 if e["kind"] == "charge" else -1 for e in entries)
        assert net == (1 if saga["status"] == "completed" else 0), (saga, entries)
    orders = {o["saga_id"]: o for o in shop.system.cli_json("order", "list", "--limit", "10000")}
    for saga in sagas:
        order = orders.get(saga["saga_id"])
        if saga["status"] == "completed":
            assert order is not None and order["status"] == "created"
        else:
            assert order is None or order["status"] == "cancelled"
