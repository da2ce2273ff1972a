"""Which machine network, if any, an IP address belongs to (docs/tracking.md).

The ranges are data: ``data/machine_networks.toml``, one section per network with its
source, date and the reason stored on the event (``apple_mpp_ip``,
``scanner_network:mimecast``...). The file is read once per process into two sorted
tables of integer intervals (IPv4 and IPv6), so a lookup is one ``bisect`` over a few
dozen entries: cheap enough for the click redirect's hot path. Sections may not overlap,
which is what makes one binary search enough; loading refuses a file where they do.
"""

from __future__ import annotations

import ipaddress
import tomllib
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import pairwise
from typing import Literal

DATA_FILE = "data/machine_networks.toml"
AppliesTo = Literal["opens", "clicks", "both"]


@dataclass(frozen=True)
class Network:
    """One section of the data file."""

    name: str
    reason: str
    applies_to: AppliesTo
    asns: tuple[int, ...]
    source: str
    source_date: str
    cidrs: tuple[str, ...]

    def applies(self, is_click: bool) -> bool:
        return self.applies_to == "both" or self.applies_to == ("clicks" if is_click else "opens")


@dataclass(frozen=True)
class _Table:
    starts: tuple[int, ...]
    ends: tuple[int, ...]  # inclusive
    networks: tuple[Network, ...]

    def find(self, value: int) -> Network | None:
        at = bisect_right(self.starts, value) - 1
        if at >= 0 and value <= self.ends[at]:
            return self.networks[at]
        return None


class NetworkMap:
    """IPv4 and IPv6 interval tables built from the sections of one data file."""

    def __init__(self, networks: list[Network]) -> None:
        self.networks = tuple(networks)
        rows: dict[int, list[tuple[int, int, Network]]] = {4: [], 6: []}
        for network in networks:
            for cidr in network.cidrs:
                net = ipaddress.ip_network(cidr, strict=True)
                rows[net.version].append(
                    (int(net.network_address), int(net.broadcast_address), network)
                )
        self._tables: dict[int, _Table] = {}
        for version, found in rows.items():
            found.sort(key=lambda row: row[0])
            for (_, end, left), (start, _, right) in pairwise(found):
                if start <= end:
                    raise ValueError(
                        f"machine networks overlap: a range of {left.name!r} contains the "
                        f"start of one of {right.name!r}"
                    )
            self._tables[version] = _Table(
                tuple(r[0] for r in found), tuple(r[1] for r in found), tuple(r[2] for r in found)
            )

    def lookup(self, ip: str | None) -> Network | None:
        """The network ``ip`` is in; ``None`` for others and for what is not an address."""
        if not ip:
            return None
        try:
            address = ipaddress.ip_address(ip.strip().strip("[]"))
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:a.b.c.d from a dual-stack socket
        return self._tables[address.version].find(int(address))


def parse(text: str) -> list[Network]:
    """The sections of a data file; a missing or mistyped field is an error naming it."""
    document = tomllib.loads(text)
    networks: list[Network] = []
    for i, section in enumerate(document.get("network", [])):
        try:
            applies_to = section["applies_to"]
            if applies_to not in ("opens", "clicks", "both"):
                raise ValueError(f"applies_to must be opens, clicks or both, not {applies_to!r}")
            networks.append(
                Network(
                    name=str(section["name"]),
                    reason=str(section["reason"]),
                    applies_to=applies_to,
                    asns=tuple(int(a) for a in section.get("asns", ())),
                    source=str(section["source"]),
                    source_date=str(section["source_date"]),
                    cidrs=tuple(str(c) for c in section["cidrs"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"machine network section {i}: {exc}") from exc
    return networks


@lru_cache(maxsize=1)
def shipped() -> NetworkMap:
    """The map of the data file shipped with Postwise, loaded once per process."""
    text = resources.files("postwise.tracking").joinpath(DATA_FILE).read_text("utf-8")
    return NetworkMap(parse(text))
