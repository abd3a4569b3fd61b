"""Who is on which connection: Seata's ChannelManager (PROTOCOL.md 5.1, BEHAVIOUR.md 2.5).

Maps kept here:

* connection -> :class:`ClientInfo` (role, application, group, version, client id, resources);
* TM connections: application -> ip -> port -> connection;
* RM connections: resource id -> application -> ip -> port -> connection.

:meth:`ChannelRegistry.rm_channel` picks the connection for a TC -> RM request in Seata's order:
the exact client that registered the branch, another port on the same IP, another IP of the same
application, and (AT only) any application that registered the resource.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum

from pyseata.protocol.enums import BranchType
from pyseata.rpc.channel import Channel

__all__ = ["ChannelRegistry", "ClientInfo", "Role", "client_id_of"]


class Role(Enum):
    TM = "TM"
    RM = "RM"


@dataclass(slots=True)
class ClientInfo:
    role: Role
    application_id: str
    transaction_service_group: str
    version: str
    ip: str
    port: int
    resource_ids: set[str] = field(default_factory=set)
    extra_data: str | None = None

    @property
    def client_id(self) -> str:
        return client_id_of(self.application_id, self.ip, self.port)


def client_id_of(application_id: str, ip: str, port: int) -> str:
    """Seata's clientId: ``applicationId:ip:port`` of the registered connection."""
    return f"{application_id}:{ip}:{port}"


def split_client_id(client_id: str) -> tuple[str, str, int] | None:
    app, sep, rest = client_id.partition(":")
    ip, sep2, port = rest.rpartition(":")
    if not sep or not sep2 or not port.isdigit():
        return None
    return app, ip, int(port)


_PortMap = dict[int, Channel]
_IpMap = dict[str, _PortMap]


class ChannelRegistry:
    def __init__(self) -> None:
        self._info: dict[Channel, ClientInfo] = {}
        # Where each connection registered as TM sits in the TM tree. Kept apart from _info
        # because one connection may register as TM and as RM (seata-go does).
        self._tm_key: dict[Channel, tuple[str, str, int]] = {}
        self._tm: dict[str, _IpMap] = defaultdict(lambda: defaultdict(dict))
        self._rm: dict[str, dict[str, _IpMap]] = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))

    def __len__(self) -> int:
        return len(self._info)

    def info(self, channel: Channel) -> ClientInfo | None:
        """What the connection registered as; the RM record when it registered as both."""
        return self._info.get(channel)

    def channels(self) -> list[Channel]:
        return list(self._info)

    def register_tm(self, channel: Channel, info: ClientInfo) -> None:
        known = self._info.get(channel)
        if known is None or known.role is Role.TM:
            self._info[channel] = info
        old = self._tm_key.get(channel)
        if old is not None:
            _discard(self._tm, old, channel)
        key = (info.application_id, info.ip, info.port)
        self._tm_key[channel] = key
        self._tm[info.application_id][info.ip][info.port] = channel

    def register_rm(self, channel: Channel, info: ClientInfo, resource_ids: set[str]) -> None:
        """Registers (or, for a re-registration, extends) an RM connection's resources."""
        known = self._info.get(channel)
        if known is not None and known.role is Role.RM:
            known.resource_ids |= resource_ids
            info = known
        else:
            info.resource_ids = set(resource_ids)
            self._info[channel] = info
        for resource_id in resource_ids:
            self._rm[resource_id][info.application_id][info.ip][info.port] = channel

    def unregister(self, channel: Channel) -> ClientInfo | None:
        tm_key = self._tm_key.pop(channel, None)
        if tm_key is not None:
            _discard(self._tm, tm_key, channel)
        info = self._info.pop(channel, None)
        if info is None:
            return None
        for resource_id in info.resource_ids:
            _discard(self._rm, (resource_id, info.application_id, info.ip, info.port), channel)
        return info

    def tm_channels(self) -> dict[str, list[Channel]]:
        """Live TM connections per application."""
        out: dict[str, list[Channel]] = {}
        for app, ips in self._tm.items():
            found = [c for ports in ips.values() for c in ports.values() if _usable(c)]
            if found:
                out[app] = found
        return out

    def rm_channel(self, resource_id: str, client_id: str | None, branch_type: BranchType) -> Channel | None:
        """The connection to send a branch's phase-two request on, or None when no RM is there."""
        apps = self._rm.get(resource_id)
        if not apps:
            return None
        wanted = split_client_id(client_id) if client_id else None
        if wanted is not None:
            app, ip, port = wanted
            ips = apps.get(app, {})
            exact = ips.get(ip, {}).get(port)
            if _usable(exact):
                return exact
            for candidate in ips.get(ip, {}).values():  # another port on the same IP
                if _usable(candidate):
                    return candidate
            for ports in ips.values():  # another IP of the same application
                for candidate in ports.values():
                    if _usable(candidate):
                        return candidate
            if branch_type is not BranchType.AT:
                return None
        for ips in apps.values():  # AT: any application that holds the resource
            for ports in ips.values():
                for candidate in ports.values():
                    if _usable(candidate):
                        return candidate
        return None

    def rm_channels_for_resources(self) -> dict[str, list[Channel]]:
        """Every live RM connection per resource (for UndoLogDelete broadcasts and the console)."""
        out: dict[str, list[Channel]] = {}
        for resource_id, apps in self._rm.items():
            found = [c for ips in apps.values() for ports in ips.values() for c in ports.values() if _usable(c)]
            if found:
                out[resource_id] = found
        return out


def _usable(channel: Channel | None) -> bool:
    return channel is not None and not channel.is_closed


def _discard(tree: dict, path: tuple[str | int, ...], channel: Channel) -> None:  # type: ignore[type-arg]
    """Removes ``channel`` at ``path`` and prunes maps left empty."""
    nodes = [tree]
    for key in path[:-1]:
        node = nodes[-1].get(key)
        if node is None:
            return
        nodes.append(node)
    leaf = nodes[-1]
    if leaf.get(path[-1]) is channel:
        del leaf[path[-1]]
    for depth in range(len(path) - 1, 0, -1):
        if not nodes[depth]:
            del nodes[depth - 1][path[depth - 1]]
