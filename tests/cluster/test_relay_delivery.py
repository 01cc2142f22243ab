"""A message relayed from another node is delivered like any other push: counted in the metrics
of the node that sends it to its client, with the same error handling."""

from __future__ import annotations

from ops.opskit import scrape, value
from support.client import Client
from support.nodes import running_nodes
from support.redisserver import running_redis

SENT = "easyrtc_messages_sent_total"
SIGNALS = 3


async def test_a_relay_from_another_node_is_counted_where_it_is_delivered() -> None:
    signals = SIGNALS
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 2, cluster="relayed") as (first, second),
    ):
        alice, bob = Client(), Client()
        await alice.connect(first.url)
        await bob.connect(second.url)
        try:
            await alice.login()
            await bob.login()
            while bob.easyrtcid not in str(await alice.next_cmd()):  # alice's node knows bob
                pass
            _, before = await scrape(second.url + "/metrics")
            for i in range(signals):
                msg = {
                    "msgType": "candidate",
                    "targetEasyrtcid": bob.easyrtcid,
                    "msgData": {"n": i},
                }
                assert (await alice.call("easyrtcCmd", msg))["msgType"] == "ack"
            for i in range(signals):
                relayed = await bob.next_cmd()
                while relayed["msgType"] != "candidate":  # member-list pushes may come first
                    relayed = await bob.next_cmd()
                assert relayed["msgData"] == {"n": i}
            _, after = await scrape(second.url + "/metrics")
        finally:
            await alice.sio.disconnect()
            await bob.sio.disconnect()
    counted = value(after, SENT, msg_type="candidate") - value(before, SENT, msg_type="candidate")
    assert counted == signals
