"""The transport on a 3-node RabbitMQ cluster of the session's own: the queues it makes are
held by every node (up to 3), queues made before are taken as they are, and a process
whose node leaves carries on on another node with nothing lost."""

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from contracts.envelope import Envelope
from contracts.topology import Topology
from saga.amqp_nodes import connect_pika
from saga.core.policy import Backoff
from saga.rabbit import RabbitTransport, delete_topology, work_queue_arguments
from saga.transport import ACK, Delivery, Outcome
from tests.integration.test_transport_contract import envelope
from tests.nodes import RabbitCluster
from tests.servers import SHOP_PARTICIPANTS
from tests.waiting import eventually


def members(cluster: RabbitCluster) -> dict[str, set[str]]:
    """Each quorum queue's members (node names), as the cluster tells them."""
    listed = cluster.nodes[0].ctl("list_queues", "name", "members", "--formatter", "json")
    return {q["name"]: set(q["members"]) for q in json.loads(listed.stdout)}


@pytest.fixture
async def cleaned(rabbit_cluster: RabbitCluster, namespace: str) -> AsyncIterator[Topology]:
    """The namespace's topology, deleted from the cluster afterwards."""
    topology = Topology(namespace, SHOP_PARTICIPANTS)
    yield topology
    async with await connect_pika(rabbit_cluster.url) as connection:
        await delete_topology(await connection.channel(), topology.with_participants(["courier"]))


async def test_the_queues_it_makes_are_held_by_every_node_up_to_three(
    rabbit_cluster: RabbitCluster, cleaned: Topology
) -> None:
    transport = RabbitTransport(rabbit_cluster.url, cleaned)
    assert transport.group_size == 3
    await transport.connect()
    await transport.close()
    held = await asyncio.to_thread(members, rabbit_cluster)
    every = {node.name for node in rabbit_cluster.nodes}
    assert {q: held[q] for q in cleaned.all_queues()} == dict.fromkeys(cleaned.all_queues(), every)


async def test_a_queue_that_exists_is_taken_with_the_members_it_has(
    rabbit_cluster: RabbitCluster, cleaned: Topology
) -> None:
    # Made as before clusters were supported: no group size (RabbitMQ's default, 3 here).
    async with await connect_pika(rabbit_cluster.url) as connection:
        channel = await connection.channel()
        await channel.declare_queue(
            cleaned.orchestrator_queue, durable=True, arguments=work_queue_arguments(cleaned)
        )
    with capture_logs() as logs:
        transport = RabbitTransport(rabbit_cluster.url, cleaned, quorum_size=4)
    # More than the nodes named: said at start-up.
    assert [e["nodes_named"] for e in logs if "quorum_size" in e] == [3]
    transport = RabbitTransport(rabbit_cluster.url, cleaned, quorum_size=2)
    await transport.connect()  # no PRECONDITION_FAILED for the existing queue
    await transport.declare_participants(["courier"])
    await transport.close()
    held = await asyncio.to_thread(members, rabbit_cluster)
    assert len(held[cleaned.orchestrator_queue]) == 3  # as it was made
    assert len(held[cleaned.participant_queue("courier")]) == 2  # made now


async def test_a_consumer_whose_node_leaves_is_back_on_another_with_every_message(
    rabbit_cluster: RabbitCluster, cleaned: Topology
) -> None:
    transport = RabbitTransport(
        rabbit_cluster.url, cleaned, reconnect=Backoff(backoff=0.1, max_backoff=0.1)
    )
    await transport.connect()
    seen: list[str] = []

    async def handler(delivery: Delivery) -> Outcome:
        seen.append(Envelope.from_bytes(delivery.body).message_id)
        return ACK

    try:
        await transport.consume(cleaned.participant_queue("stock"), handler)
        await transport.publish_command("stock", envelope(1))
        await eventually(lambda: asyncio.sleep(0, set(seen)), until=lambda s: s == {"m1"})
        lost = transport._connection
        [leaving] = [node for node in rabbit_cluster.nodes if node.url == transport.node]
        await asyncio.to_thread(leaving.stop_app)
        try:
            await eventually(
                lambda: asyncio.sleep(0, transport.connected and transport._connection is not lost),
                what="the consumer back on another node",
                within=30,
            )
            # Published (and confirmed by the two nodes left) while one is gone.
            for n in (2, 3):
                await transport.publish_command("stock", envelope(n))
            await eventually(
                lambda: asyncio.sleep(0, set(seen)), until=lambda s: s == {"m1", "m2", "m3"}
            )
        finally:
            await asyncio.to_thread(leaving.start_app)
    finally:
        await transport.close()
