"""A Redis Cluster URL and its TLS settings; the names of a cluster's keys on each kind of Redis.

On one Redis or Sentinel the names are those of before (old and new nodes of a rolling upgrade
agree on them); on a Redis Cluster they carry hash tags: the keys the scripts touch together in
one slot, each node's inbox in a slot of its own.
"""

from __future__ import annotations

import pytest
from redis.cluster import key_slot

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.redisclient import parse_cluster_url, parse_sentinel_url
from easyrtc_server.options import Options, OptionsError


def test_a_cluster_url_names_its_nodes_and_password() -> None:
    spec = parse_cluster_url("redis+cluster://:pa%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert spec.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (spec.username, spec.password, spec.tls) == (None, "pa@ss", False)
    spec = parse_cluster_url("rediss+cluster://user:secret@h:1/")
    assert (spec.username, spec.password, spec.tls) == ("user", "secret", True)
    assert Options(redis_url="redis+cluster://h:1,h:2").redis_url == "redis+cluster://h:1,h:2"


def test_a_tls_url_names_the_authority_and_certificate_in_its_query() -> None:
    url = (
        "rediss+cluster://:pw@h:1?ssl_ca_certs=%2Fetc%2Fca.crt&ssl_certfile=/c.crt"
        "&ssl_keyfile=/c.key&ssl_cert_reqs=required&ssl_check_hostname=false"
    )
    spec = parse_cluster_url(url)
    assert (spec.nodes, spec.password, spec.tls) == ((("h", 1),), "pw", True)
    assert dict(spec.tls_options) == {
        "ssl_ca_certs": "/etc/ca.crt",
        "ssl_certfile": "/c.crt",
        "ssl_keyfile": "/c.key",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": "false",
    }
    sentinel = parse_sentinel_url("rediss+sentinel://h:1/m?ssl_ca_certs=/ca.crt")
    assert (sentinel.master, sentinel.tls_options) == ("m", (("ssl_ca_certs", "/ca.crt"),))


def test_a_bad_cluster_url_is_refused_at_start_without_its_password() -> None:
    for url, why in (
        ("redis+cluster://:hunter2@h:x", "is not host:port"),
        ("redis+cluster://:hunter2@", "needs host:port"),
        ("redis+cluster://:hunter2@h:1,,h:2", "needs host:port"),
        ("redis+cluster://:hunter2@h:99999", "no valid port"),
        ("redis+cluster://:hunter2@h:1/3", "names no database"),
        ("rediss+cluster://:hunter2@h:1?ssl_ca_cert=/ca", "takes no 'ssl_ca_cert'"),
        ("redis+cluster://:hunter2@h:1?ssl_ca_certs=/ca", "needs TLS"),
        ("rediss+cluster://:hunter2@h:1?ssl_cert_reqs=maybe", "one of none, optional"),
        ("rediss+cluster://:hunter2@h:1?ssl_check_hostname=perhaps", "true or false"),
        ("rediss+cluster://:hunter2@h:1?ssl_ca_certs=", "is empty"),
        ("rediss+sentinel://:hunter2@h:1/m?password=hunter2", "takes no 'password'"),
    ):
        with pytest.raises(OptionsError) as refused:
            Options(redis_url=url)
        assert why in str(refused.value)
        assert "hunter2" not in str(refused.value)


def test_on_one_redis_and_sentinel_the_names_stay_those_of_before() -> None:
    keys = ClusterKeys("easyrtc")
    assert [keys.log, keys.snapshot, keys.epoch, keys.alive("n1"), keys.inbox("n1")] == [
        "easyrtc:log",
        "easyrtc:snapshot",
        "easyrtc:epoch",
        "easyrtc:alive:n1",
        "easyrtc:node:n1",
    ]
    assert keys.alive_pattern == "easyrtc:alive:*"


def test_on_a_redis_cluster_the_keys_share_one_slot_and_each_inbox_has_its_own() -> None:
    keys = ClusterKeys("easyrtc", hash_tags=True)
    names = [
        keys.log,
        keys.snapshot,
        keys.snapshot_id,
        keys.trimmed,
        keys.snapshot_lock,
        keys.epoch,
        keys.reaper,
        keys.alive("n1"),
        keys.alive("zz9"),
    ]
    assert keys.log == "{easyrtc}:log"
    assert {key_slot(name.encode()) for name in names} == {key_slot(b"easyrtc")}
    assert keys.alive_pattern == "{easyrtc}:alive:*"
    inboxes = [keys.inbox(f"node{i}") for i in range(64)]
    assert keys.inbox("n1") == "{easyrtc:node:n1}"
    slots = {key_slot(name.encode()) for name in inboxes}
    assert len(slots) > 32  # spread over the slots, so over the masters
