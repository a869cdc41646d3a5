"""The web console in a real browser (headless Chromium) on the real processes: sign-in,
the live sagas list and its filters, a saga's page, the operator's actions, dead letters,
definitions, the overview, rights, CSRF and the security headers."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from contracts.topology import Topology
from tests.e2e.browser import chromium, rows, saga_status, screenshot, sign_in, until
from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System, running_system
from tests.e2e.test_failures import FAST, ghost_reply, publish, wait_status
from tests.servers import SHOP_PARTICIPANTS

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def fresh(browser: WebDriver, system: System) -> WebDriver:
    """The browser with no session (signed out: its cookies cleared)."""
    browser.delete_all_cookies()
    browser.get(f"{system.api}/console/login")
    browser.delete_all_cookies()
    return browser


@pytest.fixture
def fresh_fast(browser: WebDriver, fast: System) -> WebDriver:
    """The browser with no session, on the fast system."""
    browser.get(f"{fast.api}/console/login")
    browser.delete_all_cookies()
    return browser


@pytest.fixture(scope="module")
def shop(system: System) -> Shop:
    return open_shop(system)


@pytest.fixture(scope="module")
def admin(system: System) -> Shop:
    return open_shop(system, role="admin")


def console_session(system: System, email: str) -> httpx.Client:
    """An HTTP client signed in to the console (its session cookie set)."""
    client = httpx.Client(base_url=system.api, timeout=10)
    response = client.post(
        "/console/login",
        data={"email": email, "password": "correct-horse", "next": "/console/sagas"},
    )
    assert response.status_code == 303, response.text
    return client


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    return html.split(marker, 1)[1].split('"', 1)[0]


def test_a_wrong_password_shows_the_form_again_saying_so(
    fresh: WebDriver, system: System, shop: Shop
) -> None:
    response = httpx.post(
        f"{system.api}/console/login", data={"email": shop.customer, "password": "wrong"}
    )
    assert response.status_code == 401
    assert "Wrong email or password." in response.text
    assert "Traceback" not in response.text
    sign_in_page = f"{system.api}/console/login"
    fresh.get(sign_in_page)
    fresh.find_element(By.NAME, "email").send_keys(shop.customer)
    fresh.find_element(By.NAME, "password").send_keys("wrong")
    fresh.find_element(By.CSS_SELECTOR, "form.login button").click()
    problem = until(
        fresh, "the problem line", lambda d: d.find_elements(By.CSS_SELECTOR, ".problem")
    )
    assert problem[0].text == "Wrong email or password."
    screenshot(fresh, "login-wrong-password")


def test_a_page_without_a_session_leads_to_the_sign_in_form_and_back(
    fresh: WebDriver, system: System, shop: Shop
) -> None:
    fresh.get(f"{system.api}/console/sagas?status=completed")
    until(fresh, "the sign-in page", lambda d: "/console/login" in d.current_url)
    screenshot(fresh, "login")
    fresh.find_element(By.NAME, "email").send_keys(shop.customer)
    fresh.find_element(By.NAME, "password").send_keys("correct-horse")
    fresh.find_element(By.CSS_SELECTOR, "form.login button").click()
    until(
        fresh,
        "back on the list",
        lambda d: d.current_url.endswith("/console/sagas?status=completed"),
    )


def test_every_console_response_carries_the_security_headers_and_a_careful_cookie(
    system: System, shop: Shop
) -> None:
    client = console_session(system, shop.customer)
    cookie = client.post(
        "/console/login", data={"email": shop.customer, "password": "correct-horse"}
    ).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # served over http here
    # Behind a TLS-terminating proxy on this machine (whom uvicorn trusts), it is Secure.
    proxied = httpx.post(
        f"{system.api}/console/login",
        data={"email": shop.customer, "password": "correct-horse"},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "Secure" in proxied.headers["set-cookie"]
    for path in (
        "/console/login",
        "/console/sagas",
        "/console/sagas/no-such-saga",
        "/console/static/console.js",
    ):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


def test_orders_placed_through_the_api_complete_on_the_list_without_a_reload(
    fresh: WebDriver, system: System, shop: Shop
) -> None:
    sign_in(fresh, system.api, shop.customer)
    fresh.get(f"{system.api}/console/sagas")
    fresh.execute_script("window.notReloaded = true;")
    placed = [shop.place([("apple", 1)]) for _ in range(2)]
    until(
        fresh,
        "both orders completed on the list",
        lambda d: all(rows(d).get(saga_id) == "completed" for saga_id in placed),
    )
    assert fresh.execute_script("return window.notReloaded === true;")
    screenshot(fresh, "sagas")


def test_each_filter_applies_on_the_first_render_and_in_the_live_updates(
    fresh: WebDriver, system: System, shop: Shop, admin: Shop
) -> None:
    theirs = admin.order([("apple", 1)])["saga_id"]
    mine = shop.order([("apple", 1)])["saga_id"]
    sign_in(fresh, system.api, admin.customer)
    for query, shown, hidden in (
        (f"customer={shop.customer}", mine, theirs),
        ("type=no-such-type", None, mine),
        ("type=order&status=completed", mine, None),
        ("status=compensated", None, mine),
    ):
        fresh.get(f"{system.api}/console/sagas?{query}")
        on_screen = rows(fresh)
        assert shown is None or shown in on_screen, query
        assert hidden not in on_screen, query
    # Live: a saga the filter refuses never appears; one it takes does.
    fresh.get(f"{system.api}/console/sagas?customer={shop.customer}&status=completed")
    refused = admin.order([("apple", 1)])["saga_id"]
    taken = shop.order([("apple", 1)])["saga_id"]
    until(fresh, "the customer's new saga", lambda d: taken in rows(d))
    assert refused not in rows(fresh)
    screenshot(fresh, "sagas-filtered")


def test_a_customer_sees_only_their_own_sagas_whatever_they_ask(
    fresh: WebDriver, system: System, shop: Shop, admin: Shop
) -> None:
    theirs = admin.order([("apple", 1)])["saga_id"]
    mine = shop.order([("apple", 1)])["saga_id"]
    sign_in(fresh, system.api, shop.customer)
    fresh.get(f"{system.api}/console/sagas?customer={admin.customer}")
    on_screen = rows(fresh)
    assert mine in on_screen and theirs not in on_screen
    later = admin.order([("apple", 1)])["saga_id"]
    newer = shop.order([("apple", 1)])["saga_id"]
    until(fresh, "the customer's new saga", lambda d: newer in rows(d))
    assert later not in rows(fresh)


def test_the_list_pages_older_sagas_by_a_cursor(system: System) -> None:
    pager = open_shop(system)
    placed = [pager.place([("apple", 1)]) for _ in range(3)]
    client = console_session(system, pager.customer)
    seen: list[str] = []
    url: str | None = "/console/sagas"
    while url is not None:
        html = client.get(url).text
        seen += [part.split('"', 1)[0] for part in html.split('data-saga-id="')[1:]]
        older = html.split('rel="next" href="', 1)
        url = older[1].split('"', 1)[0].replace("&amp;", "&") if len(older) > 1 else None
    assert seen == placed[::-1]


def test_a_form_without_its_csrf_token_is_refused(
    fresh: WebDriver, system: System, shop: Shop
) -> None:
    client = console_session(system, shop.customer)
    token = csrf_of(client.get("/console/sagas").text)
    without = client.post("/console/logout", data={})
    assert without.status_code == 403
    assert "no CSRF token" in without.text
    wrong = client.post("/console/logout", data={"csrf_token": token[::-1]})
    assert wrong.status_code == 403
    assert client.get("/console/sagas").status_code == 200  # still signed in
    # In the browser: the sign-out form stripped of its token is refused.
    sign_in(fresh, system.api, shop.customer)
    fresh.get(f"{system.api}/console/sagas")
    fresh.execute_script("document.querySelector('form.signout input[name=csrf_token]').remove();")
    fresh.find_element(By.CSS_SELECTOR, "form.signout button").click()
    problem = until(fresh, "the refusal", lambda d: d.find_elements(By.CSS_SELECTOR, ".problem"))
    assert "CSRF" in problem[0].text
    screenshot(fresh, "csrf-refused")


def test_signing_out_ends_the_session_and_revokes_its_token(system: System, shop: Shop) -> None:
    client = console_session(system, shop.customer)
    token = csrf_of(client.get("/console/sagas").text)
    cookie = dict(client.cookies)
    session = redis.Redis.from_url(system.redis_url, decode_responses=True)
    try:
        stored = session.get(f"{system.namespace}:console:session:{cookie['saga_console']}")
    finally:
        session.close()
    assert stored is not None
    bearer = json.loads(stored)["token"]
    assert httpx.post(f"{system.auth}/auth/verify", json={"token": bearer}).status_code == 200
    out = client.post("/console/logout", data={"csrf_token": token})
    assert (out.status_code, out.headers["location"]) == (303, "/console/login")
    again = httpx.get(f"{system.api}/console/sagas", cookies=cookie)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/console/login")
    # The token the session held is no good any more, to the console or the API.
    assert httpx.post(f"{system.auth}/auth/verify", json={"token": bearer}).status_code == 401


def test_a_compensated_saga_shows_its_compensation_bars_and_its_reason(
    fresh: WebDriver, system: System
) -> None:
    poor = open_shop(system, balance="1.00")
    saga_id = poor.order([("apple", 1)])["saga_id"]
    sign_in(fresh, system.api, poor.customer)
    fresh.get(f"{system.api}/console/sagas/{saga_id}")
    assert saga_status(fresh) == "compensated"
    undo = fresh.find_elements(By.CSS_SELECTOR, '[data-action="compensate"]')
    assert [(b.get_attribute("data-step"), b.get_attribute("data-outcome")) for b in undo] == [
        ("reserve_stock", "compensated")
    ]
    failed = fresh.find_elements(
        By.CSS_SELECTOR, '[data-step="take_payment"][data-action="execute"]'
    )
    assert [b.get_attribute("data-outcome") for b in failed] == ["failed"]
    assert fresh.find_element(By.CSS_SELECTOR, ".reason").text == "insufficient_funds"
    commands = fresh.find_elements(By.CSS_SELECTOR, "tr[data-command-id]")
    assert len(commands) == 3  # reserve, charge, release: each with its reply
    screenshot(fresh, "saga-compensated")


def test_a_running_saga_s_page_follows_it_live_to_its_end(
    fresh: WebDriver, system: System, shop: Shop
) -> None:
    system.pause("payment")  # the saga waits at its second step
    try:
        saga_id = shop.place([("apple", 1)])
        sign_in(fresh, system.api, shop.customer)
        fresh.get(f"{system.api}/console/sagas/{saga_id}")
        fresh.execute_script("window.notReloaded = true;")
        assert saga_status(fresh) == "running"
        # The reader opened the first event's data: the updates keep it open.
        fresh.execute_script("document.querySelector('tr[data-seq=\"1\"] details').open = true;")
        screenshot(fresh, "saga-running")
    finally:
        system.resume("payment")
    until(
        fresh,
        "the saga completed on its page",
        lambda d: saga_status(d) == "completed",
    )
    assert fresh.execute_script("return window.notReloaded === true;")
    assert fresh.execute_script("return document.querySelector('tr[data-seq=\"1\"] details').open;")
    assert not fresh.execute_script(
        "return document.querySelector('tr[data-seq=\"2\"] details').open;"
    )
    outcomes = fresh.find_elements(By.CSS_SELECTOR, '[data-action="execute"]')
    assert {b.get_attribute("data-outcome") for b in outcomes} == {"succeeded"}
    screenshot(fresh, "saga-timeline")


def test_a_customer_cannot_open_another_customer_s_saga_or_the_dead_letters(
    fresh: WebDriver, system: System, shop: Shop, admin: Shop
) -> None:
    theirs = admin.order([("apple", 1)])["saga_id"]
    client = console_session(system, shop.customer)
    other = client.get(f"/console/sagas/{theirs}")
    missing = client.get("/console/sagas/no-such-saga")
    assert (other.status_code, missing.status_code) == (404, 404)
    assert f"no saga {theirs}" in other.text
    assert client.get(f"/console/sagas/{theirs}/live").status_code == 404
    assert client.get("/console/dead-letters").status_code == 404
    sign_in(fresh, system.api, shop.customer)
    fresh.get(f"{system.api}/console/sagas/{theirs}")
    assert fresh.find_element(By.CSS_SELECTOR, ".problem").text == f"no saga {theirs}"
    assert not fresh.find_elements(By.CSS_SELECTOR, "[data-status]")
    screenshot(fresh, "saga-not-found")
    fresh.get(f"{system.api}/console/dead-letters")
    assert fresh.find_element(By.CSS_SELECTOR, ".problem").text == "no such page"


def test_free_text_holding_markup_is_shown_as_text_and_runs_nothing(
    fresh: WebDriver, system: System, shop: Shop
) -> None:
    description = "<script>window.pwned = 'description';</script>"
    address = "<img src=x onerror=\"window.pwned = 'address'\">1 Main Street"
    saga_id = shop.order([("apple", 1)], description=description, delivery_address=address)[
        "saga_id"
    ]
    sign_in(fresh, system.api, shop.customer)
    fresh.get(f"{system.api}/console/sagas/{saga_id}")
    shown = fresh.find_element(By.CSS_SELECTOR, "pre.document").text
    assert description in shown and address.replace('"', '\\"') in shown
    assert fresh.execute_script("return typeof window.pwned;") == "undefined"
    assert not fresh.find_elements(By.CSS_SELECTOR, "main img, main script")
    screenshot(fresh, "saga-markup-as-text")


EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="module")
def fast(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A system of its own, with one-second timeouts and small retry budgets."""
    with running_system(tmp_path_factory.mktemp("console-fast"), settings=FAST) as running:
        yield running


def test_a_failed_saga_is_replayed_from_the_console_after_a_dry_run_preview(
    fresh_fast: WebDriver, fast: System
) -> None:
    shop, admin = open_shop(fast), open_shop(fast, role="admin")
    fast.kill("order")  # CreateOrder and then CancelOrder get no reply: the saga fails
    try:
        saga_id = shop.place([("apple", 1)])
        wait_status(fast, shop.token, saga_id, "failed")
    finally:
        fast.restart("order")
    # The replayed undo has a one-second timeout: the order service must be consuming
    # again before it is sent, or the undo times out once more.
    fast.wait_ready()
    browser = fresh_fast
    sign_in(browser, fast.api, admin.customer)
    browser.get(f"{fast.api}/console/sagas/{saga_id}")
    assert saga_status(browser) == "failed"
    screenshot(browser, "saga-failed")
    browser.find_element(By.PARTIAL_LINK_TEXT, "replay").click()
    preview = until(
        browser, "the preview", lambda d: d.find_elements(By.CSS_SELECTOR, "[data-preview]")
    )
    assert preview[0].get_attribute("data-preview") == "CancelOrder"
    screenshot(browser, "replay-preview")
    assert fast.saga(shop.token, saga_id).json()["status"] == "failed"  # a preview changes nothing
    browser.find_element(By.CSS_SELECTOR, "button[name=confirm]").click()
    until(
        browser,
        "the replayed saga compensated on its page",
        lambda d: saga_status(d) == "compensated",
    )
    replayed = [e for e in fast.cli_json("show", saga_id)["events"] if e["type"] == "SagaReplayed"]
    assert [e["data"]["by"] for e in replayed] == [admin.customer]
    screenshot(browser, "saga-replayed")


def test_a_running_saga_is_cancelled_from_the_console_by_its_owner(
    fresh_fast: WebDriver, fast: System
) -> None:
    shop = open_shop(fast)
    fast.pause("stock")  # the saga waits at its first step
    try:
        saga_id = shop.place([("apple", 1)])
        sign_in(fresh_fast, fast.api, shop.customer)
        fresh_fast.get(f"{fast.api}/console/sagas/{saga_id}")
        fresh_fast.find_element(By.CSS_SELECTOR, "button[name=cancel]").click()
        fresh_fast.switch_to.alert.accept()
        until(fresh_fast, "back on the saga", lambda d: d.current_url.endswith(saga_id))
    finally:
        fast.resume("stock")
    until(
        fresh_fast,
        "the cancelled saga compensated",
        lambda d: saga_status(d) == "compensated",
    )
    cancels = [
        e for e in fast.cli_json("show", saga_id)["events"] if e["type"] == "CancelRequested"
    ]
    assert [e["data"]["by"] for e in cancels] == [shop.customer]


def parked(browser: WebDriver) -> dict[str, str]:
    """The dead letters on the page: each one's id and its body's preview as shown."""
    found: dict[str, str] = {}
    for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-letter-id]"):
        found[str(row.get_attribute("data-letter-id"))] = row.find_element(
            By.CSS_SELECTOR, "pre"
        ).text
    return found


def test_dead_letters_show_a_safe_preview_and_are_replayed_and_purged(
    fresh_fast: WebDriver, fast: System
) -> None:
    admin = open_shop(fast, role="admin")
    topology = Topology(fast.namespace, SHOP_PARTICIPANTS)
    ghost = ghost_reply({"note": "<script>window.pwned = 1;</script>"})
    garbage = b"\x00\xff<img src=x onerror='window.pwned = 2'>{not json"
    asyncio.run(publish(topology, topology.replies_exchange, "orchestrator", garbage))
    asyncio.run(publish(topology, topology.replies_exchange, "orchestrator", ghost.to_bytes()))
    browser = fresh_fast
    sign_in(browser, fast.api, admin.customer)

    def both_parked(d: WebDriver) -> dict[str, str] | None:
        d.get(f"{fast.api}/console/dead-letters")
        letters = parked(d)
        return letters if len(letters) >= 2 else None

    letters = until(browser, "two dead letters", both_parked)
    assert letters is not None
    previews = list(letters.values())
    assert any("<script>window.pwned = 1;</script>" in p for p in previews)
    assert any("<img src=x onerror='window.pwned = 2'>" in p for p in previews)
    assert browser.execute_script("return typeof window.pwned;") == "undefined"
    screenshot(browser, "dead-letters")
    ghost_id = next(i for i, p in letters.items() if "StockReleased" in p)
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-letter-id="{ghost_id}"]')
    row.find_element(By.CSS_SELECTOR, "button").click()
    done = until(browser, "the replay said", lambda d: d.find_elements(By.CSS_SELECTOR, ".done"))
    assert done[0].text == "1 message(s) sent back"
    # Poison still: it comes back, under the same id.
    until(browser, "the replayed letter parked again", lambda d: ghost_id in (both_parked(d) or {}))
    count = len(parked(browser))
    browser.find_element(By.PARTIAL_LINK_TEXT, "purge").click()
    browser.find_element(By.CSS_SELECTOR, "button[name=purge]").click()
    done = until(browser, "the purge said", lambda d: d.find_elements(By.CSS_SELECTOR, ".done"))
    assert done[0].text == f"{count} message(s) purged"
    assert parked(browser) == {}


def figure(browser: WebDriver, name: str) -> str:
    element = browser.find_element(By.CSS_SELECTOR, f'[data-figure="{name}"] strong')
    return str(element.text)


def test_the_overview_counts_the_last_hour_and_links_each_figure_to_its_list(
    fresh: WebDriver, system: System
) -> None:
    buyer = open_shop(system, balance="5.00")
    completed = buyer.order([("apple", 1)])["saga_id"]
    compensated = buyer.order([("apple", 1)])["saga_id"]  # no money left
    sign_in(fresh, system.api, buyer.customer)
    fresh.get(f"{system.api}/console")
    assert (figure(fresh, "completed"), figure(fresh, "compensated")) == ("1", "1")
    assert figure(fresh, "failed") == "0"
    assert not fresh.find_elements(By.CSS_SELECTOR, '[data-figure="dead-letters"]')  # admins'
    screenshot(fresh, "overview")
    minutes = fresh.find_elements(By.CSS_SELECTOR, "svg.overview [data-outcome]")
    drawn = {m.get_attribute("data-outcome") for m in minutes}
    assert drawn == {"completed", "compensated"}
    fresh.find_element(By.CSS_SELECTOR, '[data-figure="compensated"]').click()
    until(fresh, "the compensated list", lambda d: "status=compensated" in d.current_url)
    assert rows(fresh) == {compensated: "compensated"}
    fresh.get(f"{system.api}/console")
    failing = fresh.find_element(By.CSS_SELECTOR, '[data-failing-step="take_payment"] a')
    failing.click()
    until(fresh, "the list of its failures", lambda d: "failed_step=take_payment" in d.current_url)
    assert rows(fresh) == {compensated: "compensated"}
    assert completed not in rows(fresh)


def test_definitions_show_each_type_s_versions_and_a_version_s_steps(
    fresh: WebDriver, system: System, admin: Shop
) -> None:
    sign_in(fresh, system.api, admin.customer)
    fresh.get(f"{system.api}/console/definitions")
    order = fresh.find_element(By.CSS_SELECTOR, 'tr[data-type="order"]')
    latest = order.find_element(By.CSS_SELECTOR, "a[data-latest]")
    screenshot(fresh, "definitions")
    latest.click()
    steps = until(fresh, "the steps", lambda d: d.find_elements(By.CSS_SELECTOR, "[data-step]"))
    assert [s.get_attribute("data-step") for s in steps][:2] == ["reserve_stock", "take_payment"]
    assert '"name": "order"' in fresh.find_element(By.CSS_SELECTOR, "pre.document").text
    screenshot(fresh, "definition")
    fresh.get(f"{system.api}/console/definitions/order/999")
    assert (
        fresh.find_element(By.CSS_SELECTOR, ".problem").text
        == "no saga definition order version 999"
    )


def test_the_pages_fit_a_phone_s_width(fresh: WebDriver, system: System, shop: Shop) -> None:
    saga_id = shop.order([("apple", 1)])["saga_id"]
    sign_in(fresh, system.api, shop.customer)
    fresh.set_window_size(390, 844)
    try:
        for name, path in (
            ("phone-sagas", "/console/sagas"),
            ("phone-saga", f"/console/sagas/{saga_id}"),
            ("phone-overview", "/console"),
        ):
            fresh.get(f"{system.api}{path}")
            # Wide tables scroll inside their own box; the page itself does not.
            overflow = fresh.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth;"
            )
            assert overflow <= 0, (path, overflow)
            screenshot(fresh, name)
    finally:
        fresh.set_window_size(1280, 900)


def test_sagas_of_another_type_are_filtered_apart_and_their_parallel_steps_shown(
    fresh_fast: WebDriver, fast: System
) -> None:
    # The fan-out example, on a system of its own: its participants are reached one way in
    # a namespace, and the examples' tests reach them on another port.
    system, fresh, admin = fast, fresh_fast, open_shop(fast, role="admin")
    review_type = "account-review"
    system.cli("definitions", "apply", str(EXAMPLES / "fanout" / "account-review.yaml"))
    started = httpx.post(
        f"{system.api}/sagas",
        json={"type": review_type, "input": {"account": "acme", "period": "2026-11"}},
        headers={"Authorization": f"Bearer {admin.token}"},
        timeout=10,
    )
    assert started.status_code == 202, started.text
    review = started.json()["saga_id"]
    order = admin.order([("apple", 1)])["saga_id"]
    sign_in(fresh, system.api, admin.customer)
    fresh.get(f"{system.api}/console/sagas?type={review_type}")
    assert review in rows(fresh) and order not in rows(fresh)
    fresh.get(f"{system.api}/console/sagas?type=order&customer={admin.customer}")
    assert order in rows(fresh) and review not in rows(fresh)
    fresh.get(f"{system.api}/console/sagas/{review}")
    steps = {
        b.get_attribute("data-step")
        for b in fresh.find_elements(By.CSS_SELECTOR, '[data-action="execute"]')
    }
    assert {"revenue", "rebates", "specialty"} <= steps
    screenshot(fresh, "saga-parallel")


def test_a_path_the_console_does_not_have_is_a_page_saying_so(system: System) -> None:
    answer = httpx.get(f"{system.api}/console/no/such/page", timeout=10)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "no page /console/no/such/page" in answer.text
    assert "Content-Security-Policy" in answer.headers
