"""The client runtime's transport: the connections from a TM/RM process to its TCs.

What it does, as Seata's Java client does (PROTOCOL.md 4.7 and 5, BEHAVIOUR.md 1.8 and 2.6):

* Finds the TCs through Seata's lookup chain: ``tx_service_group`` -> ``vgroup_mapping[group]``
  (a cluster name) -> ``grouplist[cluster]`` (``host:port,host:port``).
* Keeps one connection per TC and role: TM traffic and RM traffic use separate connections, and
  the RM connections exist only when the process has resources or a branch handler.
* Registers every new connection before using it (RegisterTMRequest / RegisterRMRequest with all
  resource ids), and uses only connections the TC accepted (``identified``).
* Reconnects forever in the background with exponential backoff and full jitter, and registers
  again after every reconnect.
* Routes a request to the TC named in its XID when that one is connected, else round-robin over
  the connected TCs of the role; when none is connected it waits (up to the request's timeout)
  for one, so a request made during a short TC restart succeeds after the reconnect.
* Serves TC -> RM requests (BranchCommit, BranchRollback, UndoLogDelete) with one handler:
  ``async def`` handlers run on the loop, plain functions in a bounded worker pool, never on it.

:class:`SyncRpcClient` offers the same operations to synchronous programs: one event loop on a
daemon thread (:class:`~pyseata.rpc.loop_thread.LoopThread`), blocking thread-safe calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, NamedTuple, TypeAlias, TypeVar

from pyseata.errors import ConfigError, ConnectionClosedError, TransportError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import exception_code_table_for
from pyseata.protocol.frame import Frame
from pyseata.protocol.version import version_to_int
from pyseata.protocol.xid import InvalidXidError, parse_xid
from pyseata.rpc.auth import Credentials, signed_extra_data
from pyseata.rpc.channel import Channel, ChannelConfig
from pyseata.rpc.loop_thread import LoopThread
from pyseata.rpc.registry import Role
from pyseata.rpc.server import failure_response

__all__ = [
    "AsyncBranchHandler",
    "BranchHandler",
    "ClientTransportConfig",
    "NoBranchHandlerError",
    "NoTcAvailableError",
    "RegistrationRefusedError",
    "Role",
    "RpcClient",
    "SyncBranchHandler",
    "SyncRpcClient",
    "TcAddress",
    "parse_grouplist",
]

log = logging.getLogger("pyseata.rpc.client")

DEFAULT_TX_GROUP = "default_tx_group"
DEFAULT_CLUSTER = "default"
DEFAULT_GROUPLIST = "127.0.0.1:8091"  # Seata's shipped service.default.grouplist

AsyncBranchHandler: TypeAlias = Callable[[m.Message], Awaitable[m.Message | None]]
SyncBranchHandler: TypeAlias = Callable[[m.Message], m.Message | None]
BranchHandler: TypeAlias = AsyncBranchHandler | SyncBranchHandler
H = TypeVar("H", bound=Callable[..., Any])

# TC -> RM requests an RM serves, and whether the TC waits for an answer (PROTOCOL.md 5.6).
_INBOUND_ANSWERED: dict[type[m.Message], bool] = {
    m.BranchCommitRequest: True,
    m.BranchRollbackRequest: True,
    m.UndoLogDeleteRequest: False,
}


class RegistrationRefusedError(TransportError):
    """The TC answered a registration with ``identified = false``."""


class NoTcAvailableError(TransportError):
    """No registered connection to any TC of the needed role became available in time."""

    def __init__(self, message: str, addresses: tuple[str, ...]) -> None:
        super().__init__(message)
        self.addresses = addresses


class NoBranchHandlerError(TransportError):
    """The TC sent a branch request but no handler was registered with ``on_branch_request``."""


# --- configuration ----------------------------------------------------------------------------


class TcAddress(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_grouplist(text: str, *, key: str = "grouplist") -> tuple[TcAddress, ...]:
    """``host:port[,host:port]`` (IPv6 hosts in brackets) -> addresses; ``key`` names the setting
    in error messages."""
    addresses: list[TcAddress] = []
    for item in (part.strip() for part in text.split(",")):
        host, sep, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ConfigError(f"{key} = {text!r}: {item!r} is not host:port (e.g. 127.0.0.1:8091)")
        address = TcAddress(host, int(port))
        if address not in addresses:
            addresses.append(address)
    return tuple(addresses)


_POSITIVE = (
    "tm_request_timeout", "rm_request_timeout", "connect_timeout", "reconnect_initial",
    "reconnect_max", "close_timeout",
)  # fmt: skip
_POSITIVE_OR_NONE = ("heartbeat_interval", "idle_timeout")


@dataclass(frozen=True, slots=True)
class ClientTransportConfig:
    """How a TM/RM process finds, reaches and talks to its TCs. Defaults are Seata's."""

    application_id: str
    tx_service_group: str = DEFAULT_TX_GROUP
    vgroup_mapping: Mapping[str, str] = field(default_factory=lambda: {DEFAULT_TX_GROUP: DEFAULT_CLUSTER})
    grouplist: Mapping[str, str] = field(default_factory=lambda: {DEFAULT_CLUSTER: DEFAULT_GROUPLIST})
    # Reported at registration. A Java TC only compares it (>= 1.5.0 allows batch answers), and a
    # 2.7+ TC may switch protocol for newer ones: a plain 1.5.0..2.6.x is safest (PROTOCOL.md 4.6).
    version: str = "2.2.0"
    tm_request_timeout: float = 30.0
    rm_request_timeout: float = 15.0
    connect_timeout: float = 10.0  # TCP connect plus registration, per attempt
    heartbeat_interval: float | None = 5.0  # PING after this long without writes
    idle_timeout: float | None = 15.0  # drop a connection after this long without reads
    reconnect_initial: float = 0.05
    reconnect_factor: float = 2.0
    reconnect_max: float = 5.0
    credentials: Credentials | None = None
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None  # TLS name to check; None: the host of each TC address
    batch_requests: bool = False  # RM requests inside MergedWarpMessage, as Java's RM by default
    handler_threads: int = 8  # worker pool for plain-function branch handlers
    close_timeout: float = 5.0  # how long close() lets branch handlers in flight finish

    def __post_init__(self) -> None:
        # Read-only copies: a frozen config must not change under a running client.
        object.__setattr__(self, "vgroup_mapping", MappingProxyType(dict(self.vgroup_mapping)))
        object.__setattr__(self, "grouplist", MappingProxyType(dict(self.grouplist)))
        for check in _CHECKS:
            check(self)
        self.tc_addresses()

    def tc_addresses(self) -> tuple[TcAddress, ...]:
        """Seata's lookup: tx_service_group -> vgroup_mapping -> grouplist."""
        group = self.tx_service_group
        cluster = self.vgroup_mapping.get(group)
        if not cluster:
            raise ConfigError(
                f"tx_service_group {group!r} has no entry in vgroup_mapping: set "
                f"vgroup_mapping[{group!r}] = '<cluster name>' (Seata: service.vgroupMapping.{group})"
            )
        hosts = self.grouplist.get(cluster)
        if not hosts:
            raise ConfigError(
                f"vgroup_mapping[{group!r}] names cluster {cluster!r}, which has no entry in grouplist: "
                f"set grouplist[{cluster!r}] = 'host:port[,host:port]' (Seata: service.{cluster}.grouplist)"
            )
        return parse_grouplist(hosts, key=f"grouplist[{cluster!r}]")

    def request_timeout(self, role: Role) -> float:
        return self.tm_request_timeout if role is Role.TM else self.rm_request_timeout


def _check_names(config: ClientTransportConfig) -> None:
    for name in ("application_id", "tx_service_group"):
        value = getattr(config, name)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} must be a non-empty string, not {value!r}")


def _check_version(config: ClientTransportConfig) -> None:
    try:
        version_to_int(config.version)
    except ValueError as exc:
        raise ConfigError(f"version {config.version!r} is not a Seata version like '2.2.0': {exc}") from None


def _check_durations(config: ClientTransportConfig) -> None:
    for name in _POSITIVE:
        if not getattr(config, name) > 0:
            raise ConfigError(f"{name} must be > 0 seconds, not {getattr(config, name)!r}")
    for name in _POSITIVE_OR_NONE:
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ConfigError(f"{name} must be > 0 seconds or None (off), not {value!r}")
    beat, idle = config.heartbeat_interval, config.idle_timeout
    if beat is not None and idle is not None and idle <= beat:
        # The connection would be dropped for silence before the ping that prevents it.
        raise ConfigError(f"idle_timeout ({idle:g} s) must exceed heartbeat_interval ({beat:g} s); Seata: 3x")


def _check_reconnect(config: ClientTransportConfig) -> None:
    if config.reconnect_factor < 1:
        raise ConfigError(f"reconnect_factor must be >= 1, not {config.reconnect_factor!r}")
    if config.reconnect_max < config.reconnect_initial:
        raise ConfigError(
            f"reconnect_max ({config.reconnect_max:g} s) must be >= reconnect_initial "
            f"({config.reconnect_initial:g} s)"
        )


def _check_security(config: ClientTransportConfig) -> None:
    if config.credentials is not None and not isinstance(config.credentials, Credentials):
        raise ConfigError("credentials must be a pyseata.rpc.auth.Credentials or None")
    if config.ssl_context is not None and not isinstance(config.ssl_context, ssl.SSLContext):
        raise ConfigError("ssl_context must be an ssl.SSLContext or None")
    if config.server_hostname is not None and config.ssl_context is None:
        raise ConfigError("server_hostname is only used with TLS: set ssl_context too, or drop it")


def _check_pool(config: ClientTransportConfig) -> None:
    if not isinstance(config.handler_threads, int) or config.handler_threads < 1:
        raise ConfigError(f"handler_threads must be an int >= 1, not {config.handler_threads!r}")


_CHECKS: tuple[Callable[[ClientTransportConfig], None], ...] = (
    _check_names, _check_version, _check_durations, _check_reconnect, _check_security, _check_pool,
)  # fmt: skip


# --- one TC address in one role ---------------------------------------------------------------


class _Backoff:
    """Exponential backoff with full jitter: a uniform wait in [0, ceiling], the ceiling doubling
    up to a cap, so clients cut off together do not come back in step."""

    def __init__(self, config: ClientTransportConfig) -> None:
        self._initial = self._ceiling = config.reconnect_initial
        self._factor, self._cap = config.reconnect_factor, config.reconnect_max

    def next(self) -> float:
        delay = random.uniform(0, self._ceiling)
        self._ceiling = min(self._ceiling * self._factor, self._cap)
        return delay

    def reset(self) -> None:
        self._ceiling = self._initial


class _Link:
    """The registered connection to one TC in one role, and the task that keeps it up."""

    def __init__(self, client: RpcClient, address: TcAddress, role: Role) -> None:
        self.client = client
        self.address = address
        self.role = role
        self.channel: Channel | None = None  # set only while registered and open
        self.resources: set[str] = set()  # resource ids registered on ``channel`` (RM)
        self.last_error: str | None = None
        self.refused = False
        self.first_try: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None

    def __str__(self) -> str:
        return f"{self.role.value} link to TC {self.address}"

    @property
    def ready(self) -> bool:
        return self.channel is not None and not self.channel.is_closed

    def serves(self, host: str, port: int) -> bool:
        """Is this the TC at ``host:port`` (as configured, or as the connected peer)?"""
        channel = self.channel
        return self.address == (host, port) or (channel is not None and channel.peer == (host, port))

    async def run(self) -> None:
        backoff = _Backoff(self.client.config)
        while True:
            try:
                channel = await self.client._open(self)
            except RegistrationRefusedError as exc:
                self._failed(str(exc), refused=True)
            except (OSError, TimeoutError, TransportError) as exc:
                self._failed(_describe(exc), refused=False)
            except Exception as exc:  # a bug must not end the reconnect loop for good
                log.exception("%s: unexpected error while connecting", self)
                self._failed(repr(exc), refused=False)
            else:
                backoff.reset()
                await self._serve(channel)
            await asyncio.sleep(backoff.next())

    async def _serve(self, channel: Channel) -> None:
        self.channel, self.last_error, self.refused = channel, None, False
        log.info("%s registered (local %s:%d)", self, *channel.local)
        self._tried()
        self.client._link_ready()
        await channel.wait_closed()
        self.channel = None
        self.resources = set()
        if not self.client.closed:
            log.warning("%s lost; reconnecting", self)

    def _failed(self, error: str, *, refused: bool) -> None:
        level = logging.ERROR if refused else logging.WARNING
        # The first failure of a kind is worth a warning; the same one every backoff step is not.
        log.log(logging.DEBUG if error == self.last_error else level, "%s: %s", self, error)
        self.last_error, self.refused = error, refused
        self._tried()

    def _tried(self) -> None:
        if not self.first_try.done():
            self.first_try.set_result(None)


# --- the client -------------------------------------------------------------------------------


class RpcClient:
    """The asyncio client runtime: TC connections for a TM and (optionally) an RM."""

    def __init__(
        self,
        config: ClientTransportConfig,
        *,
        resource_ids: Iterable[str] = (),
        branch_handler: BranchHandler | None = None,
    ) -> None:
        self.config = config
        self._addresses = config.tc_addresses()
        self._resources: dict[str, None] = {}  # insertion-ordered set
        for resource_id in resource_ids:
            self._resources[_checked_resource_id(resource_id)] = None
        self._async_handler: AsyncBranchHandler | None = None
        self._sync_handler: SyncBranchHandler | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._links: dict[Role, list[_Link]] = {Role.TM: [], Role.RM: []}
        self._turn = {role: itertools.count() for role in Role}
        self._channels: set[Channel] = set()
        self._ready: asyncio.Event | None = None
        self._started = False
        self.closed = False
        if branch_handler is not None:
            self.on_branch_request(branch_handler)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connects and registers to every TC (one attempt each; then reconnects in the background).

        Raises :class:`RegistrationRefusedError` when the TCs refused a role's registration and
        none accepted it: a wrong secret or application id does not mend itself.
        """
        if self._started:
            raise RuntimeError("RpcClient.start() was already called")
        self._started = True
        self._ready = asyncio.Event()
        self._add_links(Role.TM)
        if self._resources or self._has_handler:
            self._add_links(Role.RM)
        links = self._all_links()
        await asyncio.wait([link.first_try for link in links])
        for role in Role:
            await self._raise_if_refused(self._links[role])
        if not any(link.ready for link in links):
            log.warning("no TC reachable yet at %s; retrying in the background", self._address_text())

    async def close(self) -> None:
        """Stops reconnecting, lets branch handlers in flight answer, closes every connection;
        pending requests fail with :class:`ConnectionClosedError`."""
        if self.closed:
            return
        self.closed = True
        self._link_ready()  # wakes requests waiting for a connection: they fail now
        tasks = [link.task for link in self._all_links() if link.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        channels = list(self._channels)
        await asyncio.gather(*(c.drain_tasks(self.config.close_timeout) for c in channels))
        for channel in channels:
            channel.cancel_tasks()
            channel.close("client closed")
        for channel in channels:
            await channel.drain_tasks(self.config.close_timeout)
            await channel.wait_closed()
        if self._executor is not None:
            # Idle workers exit at once; a handler stuck in user code cannot be interrupted.
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> RpcClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def connected(self, role: Role | str = Role.TM) -> tuple[str, ...]:
        """Addresses of the TCs with a registered connection in ``role``."""
        return tuple(str(link.address) for link in self._links[Role(role)] if link.ready)

    @property
    def resource_ids(self) -> tuple[str, ...]:
        return tuple(self._resources)

    # --- requests ---------------------------------------------------------------------------------

    async def request(
        self,
        body: m.Message,
        *,
        xid: str | None = None,
        role: Role | str = Role.TM,
        timeout: float | None = None,
    ) -> m.Message:
        """Sends ``body`` to a TC and returns the response body.

        ``xid`` (default: the body's own ``xid``) picks the TC that owns the transaction when it
        is connected. Waits up to ``timeout`` (default: the role's request timeout) overall,
        including for a connection when none is up.
        """
        role = Role(role)
        if role is Role.RM:
            self._ensure_links(Role.RM)
        loop = asyncio.get_running_loop()
        timeout = self.config.request_timeout(role) if timeout is None else timeout
        deadline = loop.time() + timeout
        xid = xid if xid is not None else _xid_of(body)
        channel = await self._channel_for(role, xid, deadline, timeout)
        remaining = max(deadline - loop.time(), 0.001)
        if role is Role.RM and self.config.batch_requests:
            result: m.Message = await channel.request_batched(body, timeout=remaining)
        else:
            result = await channel.request(body, timeout=remaining)
        return result

    async def _channel_for(self, role: Role, xid: str | None, deadline: float, timeout: float) -> Channel:
        self._check_usable()
        loop = asyncio.get_running_loop()
        while True:
            assert self._ready is not None
            ready = self._ready  # taken before looking, so a connection made meanwhile wakes us
            channel = self._pick(role, xid)
            if channel is not None:
                return channel
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._unavailable(role, xid, timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), remaining)
            if self.closed:
                raise ConnectionClosedError("the client was closed while the request waited for a TC")

    def _pick(self, role: Role, xid: str | None) -> Channel | None:
        ready = [link for link in self._links[role] if link.ready]
        if not ready:
            return None
        owner = _xid_owner(xid)
        if owner is not None:
            for link in ready:
                if link.serves(*owner):
                    return link.channel
        return ready[next(self._turn[role]) % len(ready)].channel

    def _unavailable(self, role: Role, xid: str | None, timeout: float) -> NoTcAvailableError:
        links = self._links[role]
        tried = ", ".join(f"{link.address} ({link.last_error or 'connecting'})" for link in links)
        about = f" for xid {xid}" if xid else ""
        return NoTcAvailableError(
            f"no registered {role.value} connection to a TC within {timeout:g} s{about}; tried {tried}",
            tuple(str(link.address) for link in links),
        )

    def _check_usable(self) -> None:
        if self.closed:
            raise ConnectionClosedError("the client is closed")
        if not self._started:
            raise RuntimeError("call RpcClient.start() before sending requests")

    # --- resources and branch handler --------------------------------------------------------------

    async def register_resource(self, resource_id: str) -> None:
        """Remembers ``resource_id`` (it is registered again after every reconnect) and registers it
        now on every open RM connection, so the TC can route that resource's branches here."""
        resource_id = _checked_resource_id(resource_id)
        if resource_id in self._resources:
            return
        self._resources[resource_id] = None
        if not self._started or self.closed:
            return
        self._ensure_links(Role.RM)
        links = [link for link in self._links[Role.RM] if link.ready]
        await asyncio.gather(*(self._register_more(link, [resource_id]) for link in links))

    def on_branch_request(self, handler: H) -> H:
        """Sets the handler for TC -> RM requests; usable as a decorator.

        It gets a BranchCommitRequest, BranchRollbackRequest or UndoLogDeleteRequest and returns
        the BranchCommitResponse / BranchRollbackResponse (None for UndoLogDelete). An
        ``async def`` handler runs on the event loop; a plain function runs in a worker thread.
        """
        if _is_async_callable(handler):
            self._async_handler, self._sync_handler = handler, None
        else:
            self._async_handler, self._sync_handler = None, handler
        if self._started and not self.closed:
            self._ensure_links(Role.RM)
        return handler

    @property
    def _has_handler(self) -> bool:
        return self._async_handler is not None or self._sync_handler is not None

    async def _on_frame(self, channel: Channel, frame: Frame) -> None:
        body = frame.body
        answered = _INBOUND_ANSWERED.get(type(body))
        if answered is None:
            log.warning("ignoring %s from TC %s: not a request a client serves",
                        type(body).__name__, channel.peer_text)  # fmt: skip
            return
        try:
            result = await self._call_handler(body)
            if answered:
                channel.respond(frame, _checked_answer(body, result))
        except Exception as exc:
            # A missing handler is a setup problem: its traceback would only point here.
            log.error("branch handler failed on %s xid=%s branch=%s: %s", type(body).__name__,
                      getattr(body, "xid", None), getattr(body, "branch_id", None), _describe(exc),
                      exc_info=not isinstance(exc, NoBranchHandlerError))  # fmt: skip
            if answered:
                channel.respond(frame, _failure(body, exc))

    async def _call_handler(self, body: m.Message) -> m.Message | None:
        if self._async_handler is not None:
            return await self._async_handler(body)
        if self._sync_handler is not None:
            # Phase-two work may block (databases, services): never on the I/O loop.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._worker_pool(), self._sync_handler, body)
        raise NoBranchHandlerError(f"no branch handler for {type(body).__name__} (see on_branch_request)")

    def _worker_pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            size = self.config.handler_threads
            self._executor = ThreadPoolExecutor(size, thread_name_prefix="pyseata-branch")
        return self._executor

    # --- connections ------------------------------------------------------------------------------

    def _add_links(self, role: Role) -> None:
        for address in self._addresses:
            link = _Link(self, address, role)
            link.task = asyncio.get_running_loop().create_task(link.run(), name=f"pyseata {link}")
            self._links[role].append(link)

    def _ensure_links(self, role: Role) -> None:
        if self._started and not self.closed and not self._links[role]:
            self._add_links(role)

    def _all_links(self) -> list[_Link]:
        return [link for links in self._links.values() for link in links]

    def _address_text(self) -> str:
        return ", ".join(str(a) for a in self._addresses)

    def _link_ready(self) -> None:
        # Wake every waiter with the current event, then start a fresh one for later waiters.
        if self._ready is not None:
            self._ready.set()
            self._ready = asyncio.Event()

    async def _raise_if_refused(self, links: list[_Link]) -> None:
        if links and any(link.refused for link in links) and not any(link.ready for link in links):
            message = next(link.last_error for link in links if link.refused)
            await self.close()
            raise RegistrationRefusedError(message or "TC refused registration")

    async def _open(self, link: _Link) -> Channel:
        """Connects to ``link``'s TC and registers; returns the registered channel."""
        config, loop = self.config, asyncio.get_running_loop()
        host, port = link.address
        channel_config = ChannelConfig(
            request_timeout=config.request_timeout(link.role),
            heartbeat_interval=config.heartbeat_interval,
            idle_timeout=config.idle_timeout,
        )
        channel = Channel(self._on_frame, channel_config, on_close=self._channels.discard, name=str(link))
        hostname = (config.server_hostname or host) if config.ssl_context is not None else None
        self._channels.add(channel)  # from now on close() can find it, even half-registered
        try:
            async with asyncio.timeout(config.connect_timeout):
                await loop.create_connection(
                    lambda: channel, host, port, ssl=config.ssl_context, server_hostname=hostname
                )
                await self._register(link, channel)
        except BaseException:
            channel.close("connecting or registering failed")  # also drops it from self._channels
            raise
        return channel

    async def _register(self, link: _Link, channel: Channel) -> None:
        resources = list(self._resources)
        response = await channel.request(self._registration(link.role, channel, resources))
        self._accepted(link, response)
        channel.codes = exception_code_table_for(_server_version(response))
        channel.state.update(role=link.role, tc_version=_server_version(response), registered=True)
        if link.role is Role.TM:
            return
        link.resources = set(resources)
        # Resources added while this registration was in flight are not in it: add them now.
        while missing := [r for r in self._resources if r not in link.resources]:
            response = await channel.request(self._registration(Role.RM, channel, missing))
            self._accepted(link, response)
            link.resources.update(missing)

    async def _register_more(self, link: _Link, resource_ids: list[str]) -> None:
        channel = link.channel
        if channel is None:
            return  # the next connection registers every resource
        try:
            response = await channel.request(self._registration(Role.RM, channel, resource_ids))
            self._accepted(link, response)
            link.resources.update(resource_ids)
        except ConnectionClosedError:
            pass  # reconnecting registers every resource
        except (TransportError, TimeoutError) as exc:
            # A connection whose resources the TC may not know is worse than none: start over.
            log.error("%s: registering %s failed (%s); reconnecting", link, ",".join(resource_ids), exc)
            channel.close(f"resource registration failed: {exc}")

    def _registration(self, role: Role, channel: Channel, resource_ids: list[str]) -> m.Message:
        config = self.config
        extra = self._extra_data(channel.local[0])
        args = (config.version, config.application_id, config.tx_service_group, extra)
        if role is Role.TM:
            return m.RegisterTMRequest(*args)
        return m.RegisterRMRequest(*args, resource_ids=",".join(resource_ids))

    def _extra_data(self, ip: str) -> str:
        group, credentials = self.config.tx_service_group, self.config.credentials
        if credentials is not None:
            return signed_extra_data(credentials, group, ip)
        return f"vgroup={group}\nip={ip}\n"  # what a Java 2.x client sends without a secret

    def _accepted(self, link: _Link, response: m.Message) -> None:
        if isinstance(response, m.AbstractIdentifyResponse) and response.identified:
            return
        config = self.config
        # Protocol v1 loses the TC's reason (PROTOCOL.md 3.4): name the usual suspects.
        hint = (
            "check that the client's secret matches the TC's" if config.credentials is not None
            else "the TC may require credentials (ClientTransportConfig.credentials)"
        )  # fmt: skip
        raise RegistrationRefusedError(
            f"TC {link.address} refused {link.role.value} registration of application "
            f"{config.application_id!r} (group {config.tx_service_group!r}, version {config.version!r}): "
            f"{hint}; the TC's log gives the reason"
        )


# --- helpers ----------------------------------------------------------------------------------


def _checked_resource_id(resource_id: str) -> str:
    if not isinstance(resource_id, str) or not resource_id:
        raise ValueError(f"a resource id must be a non-empty string, not {resource_id!r}")
    if "," in resource_id:
        # The TC splits the registered ids on "," (PROTOCOL.md 4.7); Java replaces them by "|".
        raise ValueError(f"resource id {resource_id!r} contains ',', which separates ids on the wire")
    return resource_id


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _xid_of(body: m.Message) -> str | None:
    xid = getattr(body, "xid", None)
    return xid if isinstance(xid, str) else None


def _xid_owner(xid: str | None) -> tuple[str, int] | None:
    if not xid:
        return None
    try:
        parsed = parse_xid(xid)
    except InvalidXidError:
        return None  # not ours to judge here; any TC will answer for it
    return parsed.host, parsed.port


def _server_version(response: m.Message) -> str | None:
    return response.version if isinstance(response, m.AbstractIdentifyResponse) else None


def _is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def _checked_answer(request: m.Message, answer: m.Message | None) -> m.Message:
    expected = m.RESPONSE_FOR[type(request)]
    if not isinstance(answer, expected):
        raise TypeError(f"the branch handler returned {answer!r} for {type(request).__name__}, "
                        f"not a {expected.__name__}")  # fmt: skip
    return answer


def _failure(request: m.Message, exc: BaseException) -> m.Message:
    answer = failure_response(request, exc)
    if isinstance(request, m.AbstractBranchEndRequest) and isinstance(answer, m.AbstractBranchEndResponse):
        # Say which branch failed, so the TC's log and ours line up.
        answer = replace(answer, xid=request.xid, branch_id=request.branch_id)
    return answer


# --- synchronous programs ---------------------------------------------------------------------


class SyncRpcClient:
    """:class:`RpcClient` for synchronous programs: its loop runs on a daemon thread, and every
    method blocks the calling thread (any number of threads at once) until the loop has done it.

    Do not call it from the loop thread (an ``async def`` handler): await ``.client`` there.
    """

    def __init__(
        self,
        config: ClientTransportConfig,
        *,
        resource_ids: Iterable[str] = (),
        branch_handler: BranchHandler | None = None,
        loop_thread: LoopThread | None = None,
    ) -> None:
        self._own_thread = loop_thread is None
        self.loop_thread = loop_thread or LoopThread(name=f"pyseata-client-{config.application_id}")
        self.client = RpcClient(config, resource_ids=resource_ids, branch_handler=branch_handler)

    def start(self) -> None:
        if self._own_thread:
            self.loop_thread.start()
        try:
            self.loop_thread.run(self.client.start())
        except BaseException:
            if self._own_thread:
                self.loop_thread.stop()
            raise

    def close(self) -> None:
        if self.loop_thread.is_running:
            self.loop_thread.run(self.client.close())
        if self._own_thread:
            self.loop_thread.stop()

    def __enter__(self) -> SyncRpcClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        body: m.Message,
        *,
        xid: str | None = None,
        role: Role | str = Role.TM,
        timeout: float | None = None,
    ) -> m.Message:
        return self.loop_thread.run(self.client.request(body, xid=xid, role=role, timeout=timeout))

    def register_resource(self, resource_id: str) -> None:
        self.loop_thread.run(self.client.register_resource(resource_id))

    def on_branch_request(self, handler: H) -> H:
        if self.loop_thread.is_running:
            self.loop_thread.call(self.client.on_branch_request, handler)
        else:
            self.client.on_branch_request(handler)
        return handler

    def connected(self, role: Role | str = Role.TM) -> tuple[str, ...]:
        if self.loop_thread.is_running:
            return self.loop_thread.call(self.client.connected, role)
        return ()
