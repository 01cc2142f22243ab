"""A Redis Cluster of Debian's ``redis-server``, for cluster tests: three masters, three replicas.

Six real processes on free loopback ports (``cluster-enabled yes``, ``cluster-node-timeout``
``NODE_TIMEOUT_MS``, no persistence, each node's ``cluster-config-file`` in the test's tmp dir),
joined by ``redis-cli --cluster create ... --cluster-replicas 1`` (Debian's ``redis-tools``, a
dependency of ``redis-server``). Ready means every node logged ``Cluster state changed: ok`` and
every replica finished its sync. A test can move a slot to another master (``migrate_slot``,
as ``redis-cli --cluster reshard`` does it: ``IMPORTING``/``MIGRATING``, ``MIGRATE`` of each
key, ``SETSLOT NODE``), kill the master of a slot (``kill_master``) and wait for its replica to
take over (``promoted``), kill a master with its replica (``kill_shard``: with
``full_coverage=False`` the other slots stay served), cut a master's replica off
(``cut_off_replica``, let go with ``resume``: the master's writes meanwhile reach no replica),
or have a replica take over in a planned failover (``fail_over``).
Every process is stopped by its own pid.

With ``tls=True`` the nodes speak only TLS (``tls-port``, no plain port), on the cluster bus
and to their masters too (``tls-cluster``, ``tls-replication``), with a certificate signed by
an authority made for the test (``support.tlscerts``); clients must show a certificate of the
same authority (``tls-auth-clients yes``): ``url`` names the files in its query.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .ports import free_port
from .sentinel import LoggedProcess
from .tlscerts import TlsFiles, make_tls_files

NODE_TIMEOUT_MS = 1000
"""``cluster-node-timeout``: a master silent this long is failed over by its replica."""
START_TIMEOUT = 60.0
READY = "Ready to accept connections"
STATE_OK = "Cluster state changed: ok"
SYNCED = "MASTER <-> REPLICA sync: Finished with success"


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"


class RedisClusterSetup:
    """Six redis-server processes made one Redis Cluster; ``url`` is what a node is given."""

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        tls: bool = False,
        full_coverage: bool = True,
    ) -> None:
        self.workdir = workdir
        self.password = password
        self.full_coverage = full_coverage
        """``cluster-require-full-coverage``: False keeps the other slots served while one
        master and its replica are both down (``kill_shard``)."""
        self.tls: TlsFiles | None = None
        """The authority, certificate and key of every node (and of its clients), if TLS."""
        if tls:
            (workdir / "tls").mkdir()
            self.tls = make_tls_files(workdir / "tls")
        self.servers = [LoggedProcess(f"redis-cluster {i}", free_port()) for i in range(6)]
        self.bus_ports = {server.port: free_port() for server in self.servers}
        """Each node's cluster bus port (``cluster-port``; by default its port + 10000, which
        may be taken or past 65535)."""

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.servers[:3])
        auth = f":{self.password}@" if self.password else ""
        if self.tls is None:
            return f"redis+cluster://{auth}{hosts}"
        files = {"ssl_ca_certs": self.tls.ca, "ssl_certfile": self.tls.cert}
        query = urlencode({**files, "ssl_keyfile": self.tls.key})
        return f"rediss+cluster://{auth}{hosts}?{query}"

    def _tls_kwargs(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.tls.ca),
            "ssl_certfile": str(self.tls.cert),
            "ssl_keyfile": str(self.tls.key),
        }

    def server(self, port: int) -> LoggedProcess:
        return next(s for s in self.servers if s.port == port)

    def client(self, port: int) -> Redis:
        """A plain client of one of the cluster's nodes (cluster commands, ``MIGRATE``)."""
        return Redis(
            host="127.0.0.1",
            port=port,
            password=self.password,
            socket_timeout=10,
            **self._tls_kwargs(),
        )

    async def start(self) -> None:
        await asyncio.gather(*(s.start(self._server_command(s.port), READY) for s in self.servers))
        tls = []
        if self.tls is not None:
            tls = ["--tls", "--cacert", str(self.tls.ca), "--cert", str(self.tls.cert)]
            tls += ["--key", str(self.tls.key)]
        create = await asyncio.create_subprocess_exec(
            _binary("redis-cli"),
            *tls,
            "--cluster", "create",
            *(f"127.0.0.1:{s.port}" for s in self.servers),
            "--cluster-replicas", "1",
            "--cluster-yes",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **({"REDISCLI_AUTH": self.password} if self.password else {})},
        )  # fmt: skip
        output, _ = await create.communicate()
        if create.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed:\n" + output.decode())
        replicas = [  # as redis-cli says: the nodes themselves may not agree on it yet
            int(port) for port in re.findall(r"Adding replica 127\.0\.0\.1:(\d+)", output.decode())
        ]
        assert len(replicas) == 3, output.decode()
        async with asyncio.timeout(START_TIMEOUT):
            for server in self.servers:
                await server.wait_for(STATE_OK)
            for port in replicas:
                await self.server(port).wait_for(SYNCED)

    def _server_command(self, port: int) -> list[str]:
        auth = ["--requirepass", self.password, "--masterauth", self.password]
        listen = ["--port", str(port)]
        if self.tls is not None:
            listen = [
                "--port", "0",
                "--tls-port", str(port),
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "yes",
                "--tls-cluster", "yes",
                "--tls-replication", "yes",
            ]  # fmt: skip
        return [
            _binary("redis-server"),
            *listen,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            "--dbfilename", f"dump-{port}.rdb",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.workdir / f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-port", str(self.bus_ports[port]),
            # a replica fails over however long since it last heard its master (a loaded
            # machine may delay the sync; the tests are about the nodes, not Redis' caution)
            "--cluster-replica-validity-factor", "0",
            "--repl-diskless-load", "swapdb",
            "--cluster-require-full-coverage", "yes" if self.full_coverage else "no",
            *(auth if self.password else []),
        ]  # fmt: skip

    async def _ask(self, *command: Any) -> Any:
        """``command`` answered by the first live node (the cluster's view of itself)."""
        error: Exception | None = None
        for server in self.servers:
            if not server.running:
                continue
            client = self.client(server.port)
            try:
                return await client.execute_command(*command)
            except (RedisError, OSError) as exc:
                error = exc
            finally:
                await client.aclose()
        raise RuntimeError(f"no node of the cluster answered {command!r}: {error!r}")

    async def _nodes(self) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` parsed: id, port, role flags, master id, slots."""
        raw = await self._ask("CLUSTER", "NODES")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        nodes = []
        for line in text.strip().splitlines():
            fields = line.split()
            nodes.append(
                {
                    "id": fields[0],
                    "port": int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                    "flags": set(fields[2].split(",")),
                    "master": fields[3],
                    "slots": fields[8:],
                }
            )
        return nodes

    async def roles(self) -> dict[int, str]:
        """port -> ``master`` or ``replica``, as the cluster sees them now."""
        return {
            node["port"]: "master" if "master" in node["flags"] else "replica"
            for node in await self._nodes()
        }

    async def slot_of(self, key: str) -> int:
        slot: int = await self._ask("CLUSTER", "KEYSLOT", key)
        return slot

    async def master_of(self, slot: int, *, at: int | None = None) -> int:
        """The port of the master serving ``slot`` (as node ``at`` sees it, else any)."""
        if at is not None:
            client = self.client(at)
            try:
                ranges = await client.execute_command("CLUSTER", "SLOTS")
            finally:
                await client.aclose()
        else:
            ranges = await self._ask("CLUSTER", "SLOTS")
        for first, last, master, *_ in ranges:
            if first <= slot <= last:
                return int(master[1])
        raise RuntimeError(f"no master serves slot {slot}")

    async def replica_of(self, master_port: int) -> int:
        nodes = await self._nodes()
        master_id = next(n["id"] for n in nodes if n["port"] == master_port)
        return next(n["port"] for n in nodes if n["master"] == master_id)

    async def replicas_of(self, master_port: int) -> list[int]:
        """The ports of the live replicas of the master at ``master_port`` (none after its
        replica took over from it and it was killed, or before a demoted master is known
        as the new one's replica)."""
        nodes = await self._nodes()
        master_id = next(n["id"] for n in nodes if n["port"] == master_port)
        return [n["port"] for n in nodes if n["master"] == master_id and "fail" not in n["flags"]]

    async def node_id(self, port: int) -> str:
        client = self.client(port)
        try:
            raw = await client.execute_command("CLUSTER", "MYID")
        finally:
            await client.aclose()
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def migrate_slot(self, slot: int, target: int) -> int:
        """Move ``slot`` with its keys to the master at ``target`` (as ``redis-cli --cluster
        reshard`` does); returns the port it left."""
        source = await self.master_of(slot)
        if source == target:
            raise ValueError("the slot is there already")
        source_id, target_id = await self.node_id(source), await self.node_id(target)
        src, dst = self.client(source), self.client(target)
        try:
            await dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            await src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := await src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                auth = ["AUTH", self.password] if self.password else []
                await src.execute_command(
                    "MIGRATE", "127.0.0.1", target, "", 0, 5000, *auth, "KEYS", *keys
                )
            await dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            await src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        finally:
            await src.aclose()
            await dst.aclose()
        for port, role in (await self.roles()).items():  # the other masters learn it now
            if role == "master" and port not in (source, target):
                other = self.client(port)
                try:
                    await other.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
                finally:
                    await other.aclose()
        return source

    async def kill_master(self, slot: int) -> tuple[int, int]:
        """``kill -9`` the master serving ``slot``; returns its port and its replica's."""
        master = await self.master_of(slot)
        replica = await self.replica_of(master)
        await self.server(master).stop(kill=True)
        return master, replica

    async def kill_shard(self, master: int) -> int:
        """``kill -9`` the master at ``master`` and its replica: its slots stay unserved.
        Returns the replica's port."""
        replica = await self.replica_of(master)
        await asyncio.gather(*(self.server(port).stop(kill=True) for port in (master, replica)))
        return replica

    def pause(self, port: int) -> None:
        """Freeze the node at ``port`` (``SIGSTOP``)."""
        self._signal(port, signal.SIGSTOP)

    async def cut_off_replica(self, master: int) -> int:
        """Freeze the replica of ``master`` and close its link: the master's writes from now
        on reach no replica, and die with it if it is killed (what it sent before is in the
        frozen replica's socket, read when it is let go). Returns the replica's port."""
        replica = await self.replica_of(master)
        self.pause(replica)
        client = self.client(master)
        try:
            await client.execute_command("CLIENT", "KILL", "TYPE", "replica")
        finally:
            await client.aclose()
        return replica

    def resume(self, port: int) -> None:
        """Let a frozen node go on (``SIGCONT``)."""
        self._signal(port, signal.SIGCONT)

    def _signal(self, port: int, signum: signal.Signals) -> None:
        process = self.server(port).process
        assert process is not None and process.returncode is None, f"{port} is not running"
        os.kill(process.pid, signum)

    async def fail_over(self, slot: int) -> tuple[int, int]:
        """A planned failover (``CLUSTER FAILOVER`` on the replica) of the master serving
        ``slot``: the master stops taking writes until its replica caught up, then they swap.
        Returns the old master's port and the replica's."""
        master = await self.master_of(slot)
        replica = await self.replica_of(master)
        client = self.client(replica)
        try:
            await client.execute_command("CLUSTER", "FAILOVER")
        finally:
            await client.aclose()
        return master, replica

    async def promoted(self, replica: int, slot: int) -> None:
        """Wait until the replica at ``replica`` serves ``slot`` as a master."""
        server = self.server(replica)
        await server.wait_for("Failover election won")
        await server.wait_for("configEpoch set to .* after successful failover")
        assert await self.master_of(slot, at=replica) == replica

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop(kill=True) for s in self.servers))


@asynccontextmanager
async def running_redis_cluster(
    *, password: str | None = None, tls: bool = False, full_coverage: bool = True
) -> AsyncIterator[RedisClusterSetup]:
    """A fresh Redis Cluster of six processes for the duration of the block."""
    async with AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rcluster-")))
        setup = RedisClusterSetup(workdir, password=password, tls=tls, full_coverage=full_coverage)
        stack.push_async_callback(setup.stop)
        await setup.start()
        yield setup
