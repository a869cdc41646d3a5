"""A customer, a vendor and products of their own, so that tests do not collide."""

import uuid
from dataclasses import dataclass
from typing import Any

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


def open_shop(system: System, *, balance: str = "100.00", role: str | None = None) -> Shop:
    tag = uuid.uuid4().hex[:8]
    customer, vendor = f"ann-{tag}@example.com", f"shop-{tag}@example.com"
    products = {"apple": f"apple-{tag}", "pear": f"pear-{tag}"}
    system.cli("stock", "set", products["apple"], "--quantity", "10", "--price", "5.00")
    system.cli("stock", "set", products["pear"], "--quantity", "2", "--price", "12.50")
    system.cli("payment", "deposit", customer, balance)
    system.cli("order", "vendor", "add", vendor)
    extra = ["--role", role] if role else []
    system.cli("auth", "add-user", customer, "--password", "correct-horse", *extra)
    return Shop(system, customer, vendor, system.token(customer), products)
