"""Which sids name a node, and the forwarding options' checks (no processes here)."""

from __future__ import annotations

import pytest

from easyrtc_server.cluster.forwarding import owner_of
from easyrtc_server.options import Options, OptionsError


def test_only_sids_of_the_cluster_shape_name_a_node() -> None:
    assert owner_of("abcd1234.Zx9-_q") == "abcd1234"
    for sid in ("abcd1234.", "ABCD1234.xyz", "abc.xyz", "abcd12345.xyz", "plainsid_Zx9-"):
        assert owner_of(sid) is None, sid


@pytest.mark.parametrize("value", ["nope", "1.2.3.4:70000", ":80", "host:", "a b:1"])
def test_cluster_listen_must_be_host_and_port(value: str) -> None:
    with pytest.raises(OptionsError, match="cluster_listen"):
        Options(cluster_listen=value)
    assert Options(cluster_listen="[::1]:7001").cluster_listen == "[::1]:7001"


def test_cluster_advertise_url_must_be_http() -> None:
    with pytest.raises(OptionsError, match="cluster_advertise_url"):
        Options(cluster_advertise_url="10.0.0.5:7001")
    assert Options(cluster_advertise_url="http://10.0.0.5:7001").cluster_advertise_url
