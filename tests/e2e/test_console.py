"""The web console in a real browser (headless Chromium) on the real processes: sign-in,
the live sagas list and its filters, rights, CSRF and the security headers."""

from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.browser import chromium, rows, screenshot, sign_in, until
from tests.e2e.shop import Shop, open_shop
from tests.e2e.system import System

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
    assert "Secure" not in cookie  # served over http here; https makes it Secure
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


def test_signing_out_ends_the_session(system: System, shop: Shop) -> None:
    client = console_session(system, shop.customer)
    token = csrf_of(client.get("/console/sagas").text)
    cookie = dict(client.cookies)
    out = client.post("/console/logout", data={"csrf_token": token})
    assert (out.status_code, out.headers["location"]) == (303, "/console/login")
    again = httpx.get(f"{system.api}/console/sagas", cookies=cookie)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/console/login")
