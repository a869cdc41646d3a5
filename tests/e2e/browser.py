"""A headless Chromium driven by Selenium for the console's browser tests, and the
screenshots it leaves as the tests' artefacts."""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.servers import CHROMEDRIVER, CHROMIUM, CONSOLE_ARTIFACTS, IN_CI

# Where each page visited is saved as a PNG.
ARTIFACTS = Path(CONSOLE_ARTIFACTS)
WAIT = 30.0
T = TypeVar("T")


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[WebDriver]:
    """A headless Chromium; the test is skipped if it cannot start (failed under CI=true)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(
            options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
        )
    except (WebDriverException, OSError) as exc:
        message = f"Chromium cannot start ({CHROMIUM}, {CHROMEDRIVER}): {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: WebDriver, what: str, check: Callable[[WebDriver], T]) -> T:
    """Wait (bounded) until `check` gives something true; fail naming `what` if not."""
    # A live page swaps its parts in while they are read: read them again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=ignored).until(
        check, message=what
    )


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save the page as ARTIFACTS/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
    driver.save_screenshot(str(path))
    return path


def sign_in(driver: WebDriver, base: str, email: str, password: str = "correct-horse") -> None:
    """Sign in through the console's form; ends on the page it leads to."""
    driver.get(f"{base}/console/login")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    until(driver, "signed in", lambda d: "/console/login" not in d.current_url)


def rows(driver: WebDriver) -> dict[str, str]:
    """The sagas list on screen: each row's saga id and status."""
    found: Any = driver.execute_script(
        "return Array.from(document.querySelectorAll('tr[data-saga-id]'),"
        " r => [r.dataset.sagaId, r.dataset.status]);"
    )
    return {saga_id: status for saga_id, status in found}


def saga_status(driver: WebDriver) -> str | None:
    """The status a saga's page shows (its element with data-status)."""
    found: Any = driver.execute_script(
        "const e = document.querySelector('[data-status]'); return e ? e.dataset.status : null;"
    )
    return None if found is None else str(found)
