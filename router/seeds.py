"""Cluster addresses as the clients and the `paxoskv` command line read them: HOST:PORT,
several separated by commas. One parser for both, so an address the command line refuses is
refused by `RoutingClient` and `txn.Client` with the same words (pure: no I/O, no gRPC)."""

from __future__ import annotations

from router.client_errors import InvalidArgument

__all__ = ["check_address", "parse_addresses", "parse_seeds"]


def parse_seeds(text: str) -> list[str]:
    """Split "host:port,host:port" into addresses, ignoring blanks and spaces around them."""
    return [part.strip() for part in text.split(",") if part.strip()]


def check_address(address: str) -> str:
    """`address` if it reads as HOST:PORT.

    Raises:
        InvalidArgument: it does not, saying why (gRPC would only fail to connect later:
            "no node answered at 127.0.0.1", or a name lookup of "a:1 b").
    """
    bad = f"bad cluster address {address!r}: expected HOST:PORT"
    if "://" in address:  # a URL (http://host:port): gRPC would resolve it as a name
        raise InvalidArgument(f"{bad}, without a scheme")
    if any(char.isspace() for char in address):
        raise InvalidArgument(f"{bad}; separate several with commas")
    host, _, port = address.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        raise InvalidArgument(bad)
    if not 0 < int(port) < 65536:
        raise InvalidArgument(f"bad cluster address {address!r}: the port must be 1-65535")
    return address


def parse_addresses(text: str) -> list[str]:
    """The checked addresses of "HOST:PORT[,HOST:PORT...]".

    Raises:
        InvalidArgument: no address, or a bad one (see `check_address`).
    """
    addresses = [check_address(address) for address in parse_seeds(text)]
    if not addresses:
        raise InvalidArgument("no cluster address given (expected HOST:PORT[,HOST:PORT...])")
    return addresses
