"""Small HTTP participants for the examples: each answers the commands POSTed to
`/<service>/<command>` and keeps, per Idempotency-Key, what it did (a repeat gets the
same answer and does nothing again). `GET /<service>/tasks` lists what it holds: the
tracking of the fan-out, as each service sees it.

    python examples/services.py fanout --port 8701
    python examples/services.py order_processing --port 8702

Each example's rules are in `RULES`: a function of (service, command, payload) giving
(status, body). State lives in memory; a restart forgets it, and a compensation that comes before the
command it undoes is not remembered (these are examples; see docs/wire-protocol.md
for what a real participant does).
"""

import argparse
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

Rule = Callable[[str, str, dict[str, Any]], tuple[int, dict[str, Any]]]


def fanout(service: str, command: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Revenue, rebates and specialty of an account for a period; specialty knows no
    account named `unknown`, and every compensation discards the figure."""
    account = str(payload.get("account", ""))
    if command == "Discard":
        return 200, {"discarded": payload.get("task")}
    if service == "specialty" and account == "unknown":
        return 422, {"reason": "no_specialty_data", "detail": f"no data for {account}"}
    base = sum(map(ord, account)) % 1000
    amounts = {"revenue": base * 10, "rebates": base, "specialty": base // 3}
    return 200, {"task": f"{service}-{account}-{payload.get('period')}", "amount": amounts[service]}


def order_processing(
    service: str, command: str, payload: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Shipping books a courier (not to `nowhere`), billing issues invoices, notify
    sends messages; compensations cancel and void."""
    if command in ("CancelShipment", "VoidInvoice"):
        return 200, {"undone": True}
    if service == "shipping" and payload.get("address") == "nowhere":
        return 422, {"reason": "undeliverable", "detail": "no courier goes there"}
    if service == "shipping":
        return 200, {"tracking": f"TRK-{payload['order_id']}"}
    if service == "billing":
        return 200, {"invoice": f"INV-{payload['order_id']}", "amount": payload["amount"]}
    return 200, {"sent": command, "to": payload.get("to")}


RULES: dict[str, Rule] = {"fanout": fanout, "order_processing": order_processing}


def create_app(rule: Rule) -> FastAPI:
    app = FastAPI(title="example participants")
    done: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}

    @app.post("/{service}/{command}")
    async def handle(
        service: str,
        command: str,
        request: Request,
        idempotency_key: str = Header(alias="Idempotency-Key"),
    ) -> JSONResponse:
        payload = await request.json()  # read first: from here to the answer, no await
        tasks = done.setdefault(service, {})
        if idempotency_key not in tasks:
            tasks[idempotency_key] = rule(service, command, payload)
        status, body = tasks[idempotency_key]
        return JSONResponse(body, status_code=status)

    @app.get("/{service}/tasks")
    async def tasks(service: str) -> dict[str, Any]:
        return {key: body for key, (_, body) in done.get(service, {}).items()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("example", choices=sorted(RULES))
    parser.add_argument("--port", type=int, default=8701)
    args = parser.parse_args()
    uvicorn.run(
        create_app(RULES[args.example]), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
