"""The nodes of SAGA_RABBITMQ_URL: the list, the quorum group size that fits it, and the
first node that answers."""

import pytest
from structlog.testing import capture_logs

from saga.amqp_nodes import first_answering, group_size, node_urls


def test_a_list_of_nodes_is_read_in_its_order_and_trimmed() -> None:
    assert node_urls(" amqp://a/ ,amqp://b/,, amqp://c/") == ("amqp://a/", "amqp://b/", "amqp://c/")
    assert node_urls("amqp://a/") == ("amqp://a/",)


@pytest.mark.parametrize(
    ("asked", "nodes", "size"),
    [
        (None, 1, None),  # one node: RabbitMQ's default, no argument (queues made before)
        (None, 2, 2),
        (None, 3, 3),
        (None, 5, 3),  # every node up to 3
        (5, 5, 5),
        (1, 3, 1),
        (2, 1, 2),  # asked for: given, even behind one URL (a load balancer)
    ],
)
def test_the_group_size_is_every_node_up_to_three_unless_asked(
    asked: int | None, nodes: int, size: int | None
) -> None:
    assert group_size(asked, nodes) == size


async def test_the_first_node_that_answers_is_taken_from_the_one_asked_on_round_the_list() -> None:
    tried: list[str] = []

    async def connect(url: str) -> str:
        tried.append(url)
        if url != "c":
            raise ConnectionRefusedError(url)
        return f"connection to {url}"

    assert await first_answering(["a", "b", "c", "d"], connect, start=3) == (2, "connection to c")
    assert tried == ["d", "a", "b", "c"]


async def test_when_no_node_answers_the_last_error_is_raised() -> None:
    async def connect(url: str) -> str:
        raise ConnectionRefusedError(url)

    with capture_logs() as logs, pytest.raises(ConnectionRefusedError, match="a"):
        await first_answering(["b", "a"], connect)
    # Each node passed over is said; the last one's error is the one raised.
    assert [e["node"] for e in logs] == ["b"]


async def test_an_error_that_is_not_a_node_down_is_not_taken_for_one() -> None:
    async def connect(url: str) -> str:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await first_answering(["a", "b"], connect)
