"""`paxoskv cluster start --base-port`'s check that the ports are free (shard.cluster)."""

from __future__ import annotations

import socket
import time

import pytest

from shard.cluster import ClusterError, _check_ports_free


def _port_in_time_wait() -> int:
    """A port nothing listens on whose closed connection waits in TIME_WAIT, as a stopped
    node's port does for a minute after `paxoskv cluster stop`."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC's servers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port: int = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server's end closes first: it is the one left in TIME_WAIT
        client.recv(1)  # its FIN arrived
        client.close()
    time.sleep(0.05)
    return port


def test_a_port_left_in_time_wait_by_a_stopped_node_is_free() -> None:
    """Found by the user review: the check bound without SO_REUSEADDR, which the node's gRPC
    server sets, so for a minute after `cluster stop` a new cluster on the same --base-port
    was refused with "port P on 127.0.0.1 is not free (Address already in use)" while
    nothing listened there."""
    _check_ports_free([_port_in_time_wait()], "127.0.0.1")


@pytest.mark.parametrize("reuse_address", [False, True])
def test_a_port_something_listens_on_is_not_free(reuse_address: bool) -> None:
    with socket.socket() as listener:
        if reuse_address:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(ClusterError, match=f"port {port} on 127.0.0.1 is not free"):
            _check_ports_free([port], "127.0.0.1")
