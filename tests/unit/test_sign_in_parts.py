"""The auth service's pure parts: who a sign-in comes from, the bounded hashing pool."""

import asyncio
import threading
from ipaddress import ip_network

import pytest
from prometheus_client import REGISTRY

from saga.auth.addresses import client_address
from saga.auth.hashing import HashPool, HashPoolFull
from saga.auth.throttle import retry_after
from saga.settings import Settings, SettingsError, load_settings

PROXIES = [ip_network("127.0.0.1"), ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("203.0.113.9", None, PROXIES, "203.0.113.9"),  # no proxy: the peer
        ("203.0.113.9", "198.51.100.1", PROXIES, "203.0.113.9"),  # not a trusted peer
        ("127.0.0.1", "198.51.100.1", [], "127.0.0.1"),  # nothing trusted: XFF ignored
        ("127.0.0.1", "198.51.100.1", PROXIES, "198.51.100.1"),
        # The client wrote the first hop itself: only what trusted proxies appended counts.
        ("127.0.0.1", "1.2.3.4, 198.51.100.1, 10.1.1.1", PROXIES, "198.51.100.1"),
        ("127.0.0.1", "10.0.0.2, 10.1.1.1", PROXIES, "10.0.0.2"),  # every hop a proxy
        ("127.0.0.1", "garbage, 10.1.1.1", PROXIES, "10.1.1.1"),  # not an address: stop
        ("127.0.0.1", "", PROXIES, "127.0.0.1"),
        (None, "198.51.100.1", PROXIES, "unknown"),
        ("::1", None, PROXIES, "::1"),
    ],
)
def test_the_client_is_the_peer_unless_a_trusted_proxy_names_it(
    peer: str | None, forwarded: str | None, trusted: list[object], client: str
) -> None:
    assert client_address(peer, forwarded, trusted) == client  # type: ignore[arg-type]


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    given = Settings(auth_trusted_proxies=" 127.0.0.1, 10.0.0.0/8 ,::1")
    assert given.auth_trusted_proxies is not None
    monkeypatch.setenv("SAGA_AUTH_TRUSTED_PROXIES", "127.0.0.1,proxy.example")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "'proxy.example' is not an address or network" in str(error.value)


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.001, "1"), (1.0, "1"), (1.2, "2"), (900, "900")]
)
def test_retry_after_is_whole_seconds_at_least_one(seconds: float, header: str) -> None:
    assert retry_after(seconds) == header


def _hashes() -> float:
    return REGISTRY.get_sample_value("saga_auth_password_hashes_total") or 0.0


async def test_a_full_hash_pool_refuses_at_once_and_hashes_nothing() -> None:
    pool = HashPool(1)
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(10)

    try:
        busy = asyncio.create_task(pool.run(hold))
        assert await asyncio.to_thread(started.wait, 5)
        assert pool.full
        before = _hashes()
        with pytest.raises(HashPoolFull):
            await pool.run(lambda: True)
        assert _hashes() == before
        release.set()
        assert await busy is True
        assert await pool.run(lambda: "free again") == "free again"
        assert _hashes() == before + 1
    finally:
        release.set()
        pool.close()
