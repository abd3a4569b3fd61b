"""Round trips per second through pyseata's RPC layer, against a raw asyncio echo measured in the
same run.

    .venv/bin/python bench/rpc.py --seconds 3 --loop both [--repeat 3]

Each figure runs the server and the load generator in two separate processes on loopback:

* ``rpc``: an :class:`~pyseata.rpc.server.RpcServer` answering GlobalBeginRequest with a
  GlobalBeginResponse (64- and 58-byte frames); the client is a registered TM
  :class:`~pyseata.rpc.channel.Channel` with 1, 16 or 64 concurrent callers, each awaiting one
  request at a time.
* ``raw``: the physical ceiling of TARGETS.md: a plain ``asyncio.Protocol`` server echoing
  64-byte length-prefixed frames (all whole frames of a read in one write), and a plain client
  matching answers to callers in order. It is leaner than whatever produced the TARGETS.md table
  (an asyncio-streams echo gives about the same as this one here, both far above that table's
  16k/30k rt/s at 16/64 callers), so the ratio here is the stricter one.

The ratio rpc / raw is what TARGETS.md asks to keep at 0.5 or more. Besides round trips per
second, each figure shows the CPU time each process spent per round trip: on a loaded machine
that is steadier than the rates. The machines these run on are shared and noisy: use
``--repeat`` for medians over several raw/rpc pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finish, parser
from pyseata.protocol import messages as m
from pyseata.protocol.enums import MessageType
from pyseata.protocol.frame import Frame, encode_frame
from pyseata.rpc.channel import Channel, ChannelConfig
from pyseata.rpc.registry import ClientInfo
from pyseata.rpc.server import RpcServer, ServerConfig

XID = "127.0.0.1:8091:2612341069705662465"
# A transaction name long enough that the request frame is 64 bytes, like the raw echo's frames.
REQUEST = m.GlobalBeginRequest(timeout=60000, transaction_name="place-order-" + "x" * 28)
RESPONSE = m.GlobalBeginResponse(xid=XID)
FRAME_SIZE = len(encode_frame(Frame(MessageType.REQUEST_SYNC, 1, REQUEST)))
CALLERS = (1, 16, 64)


def _run(main: Coroutine[Any, Any, Any], loop_kind: str) -> Any:
    if loop_kind == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


# --- the servers ---------------------------------------------------------------------------------


class _Begin:
    """The smallest TransactionHandler: every begin gets the same XID."""

    count = 0

    async def handle(self, request: m.Message, client: ClientInfo) -> m.AbstractResultMessage:
        _Begin.count += 1
        return RESPONSE

    def client_gone(self, client: ClientInfo) -> None:
        pass


def _whole_frames(buf: bytearray) -> tuple[int, int]:
    """How many whole length-prefixed frames ``buf`` starts with, and the bytes they take."""
    count = pos = 0
    while len(buf) - pos >= 4:
        size = int.from_bytes(buf[pos : pos + 4], "big")
        if len(buf) - pos < size:
            break
        pos += size
        count += 1
    return count, pos


class _RawEcho(asyncio.Protocol):
    """Echoes every whole length-prefixed frame; all frames of one read leave in one write."""

    count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transports are not asyncio.Transport subclasses
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        count, pos = _whole_frames(buf)
        _RawEcho.count += count
        if pos:
            self.transport.write(bytes(buf[:pos]))
            del buf[:pos]


async def _serve(kind: str) -> None:
    loop = asyncio.get_running_loop()
    if kind == "rpc":
        server = RpcServer(_Begin(), ServerConfig(port=0))
        await server.start()
        port = server.address[1]
    else:
        raw = await loop.create_server(_RawEcho, "127.0.0.1", 0)
        port = raw.sockets[0].getsockname()[1]
    print(port, flush=True)
    # Serve until the parent closes our stdin, then report the CPU time spent per answer.
    await loop.run_in_executor(None, sys.stdin.read)
    answered = _Begin.count if kind == "rpc" else _RawEcho.count
    print(json.dumps({"cpu_s": time.process_time(), "answered": answered}), flush=True)


# --- the load generators ---------------------------------------------------------------------------


class _RawClient(asyncio.Protocol):
    """Sends length-prefixed frames; answers come back in order, so a FIFO of futures matches them."""

    def __init__(self) -> None:
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        count, pos = _whole_frames(buf)
        waiters = self.waiters
        for _ in range(count):
            waiters.popleft().set_result(None)
        del buf[:pos]

    def call(self, frame: bytes) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self.transport.write(frame)
        return future


async def _measure(call: Callable[[], Coroutine[Any, Any, Any]], callers: int, seconds: float) -> tuple[float, float]:
    """Round trips per second, and this process's CPU microseconds per round trip."""
    counts = [0]
    measuring = [False]
    stop = [False]

    async def caller() -> None:
        while not stop[0]:
            await call()
            if measuring[0]:
                counts[0] += 1

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await asyncio.sleep(min(1.0, seconds / 3))  # warm-up
    measuring[0] = True
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    measuring[0] = False
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stop[0] = True
    await asyncio.gather(*tasks)
    return counts[0] / elapsed, cpu * 1e6 / max(counts[0], 1)


async def _drive(kind: str, port: int, callers: int, seconds: float) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    if kind == "rpc":
        config = ChannelConfig(heartbeat_interval=None, idle_timeout=None)
        _, channel = await loop.create_connection(
            lambda: Channel(_no_requests, config, name="bench"), "127.0.0.1", port
        )
        answer = await channel.request(m.RegisterTMRequest("2.2.0", "bench", "bench_group"))
        assert isinstance(answer, m.RegisterTMResponse) and answer.identified, answer

        async def call() -> Any:
            return await channel.request(REQUEST)

        result = await _measure(call, callers, seconds)
        channel.close()
        return result
    payload = FRAME_SIZE.to_bytes(4, "big") + b"x" * (FRAME_SIZE - 4)
    transport, client = await loop.create_connection(_RawClient, "127.0.0.1", port)

    async def raw_call() -> None:
        await client.call(payload)

    result = await _measure(raw_call, callers, seconds)
    transport.close()
    return result


async def _no_requests(channel: Channel, frame: Frame) -> None:
    raise AssertionError(f"the TC sent a request: {frame!r}")


# --- the orchestrator ------------------------------------------------------------------------------


def _figure(kind: str, loop_kind: str, callers: int, seconds: float) -> dict[str, float]:
    """One server process and one client process: round trips per second and the CPU
    microseconds each process spent per round trip."""
    me = [sys.executable, __file__, "--loop", loop_kind]
    server = subprocess.Popen([*me, "--serve", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        out = subprocess.run(
            [*me, "--drive", kind, "--port", str(port), "--callers", str(callers), "--seconds", str(seconds)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        client = json.loads(out.strip().splitlines()[-1])
        server.stdin.close()
        report = json.loads(server.stdout.readline())
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return {
        "rt_per_s": client["rt_per_s"],
        "client_cpu_us": client["cpu_us_per_rt"],
        # The server's CPU includes start-up and warm-up: spread over every answer it gave.
        "server_cpu_us": report["cpu_s"] * 1e6 / max(report["answered"], 1),
    }


def _cpu(figure: dict[str, float]) -> str:
    return f"{figure['client_cpu_us']:.1f} + {figure['server_cpu_us']:.1f}"


def _loops(choice: str) -> list[str]:
    wanted = ["asyncio", "uvloop"] if choice == "both" else [choice]
    if "uvloop" in wanted:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            print("uvloop is not installed; measuring asyncio only", file=sys.stderr)
            wanted.remove("uvloop")
    return wanted


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    p.add_argument("--repeat", type=int, default=1, help="raw/rpc pairs per figure; medians are shown")
    p.add_argument("--serve", choices=["rpc", "raw"], help=argparse.SUPPRESS)
    p.add_argument("--drive", choices=["rpc", "raw"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--callers", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        _run(_serve(args.serve), args.loop)
        return
    if args.drive:
        rate, cpu_us = _run(_drive(args.drive, args.port, args.callers, args.seconds), args.loop)
        print(json.dumps({"rt_per_s": rate, "cpu_us_per_rt": cpu_us}))
        return

    figures: dict[str, Any] = {
        "seconds": args.seconds,
        "repeat": args.repeat,
        "frame_bytes": FRAME_SIZE,
        "raw_echo": "asyncio.Protocol server and client, one write per read (see the module docstring)",
    }
    print(
        f"{'loop':<9}{'callers':>8}{'raw rt/s':>11}{'rpc rt/s':>11}{'ratio':>7}"
        f"{'raw cpu us/rt':>15}{'rpc cpu us/rt':>15}"
    )
    print(f"{'':<9}{'':>8}{'':>11}{'':>11}{'':>7}{'cli + srv':>15}{'cli + srv':>15}")
    for loop_kind in _loops(args.loop):
        for callers in CALLERS:
            # raw and rpc back to back, so that each pair sees the same load from the rest of the
            # machine; with --repeat, medians over the pairs (the ratio: median of pair ratios).
            pairs = [
                (_figure("raw", loop_kind, callers, args.seconds), _figure("rpc", loop_kind, callers, args.seconds))
                for _ in range(args.repeat)
            ]
            raw = {key: median(r[key] for r, _ in pairs) for key in pairs[0][0]}
            rpc = {key: median(q[key] for _, q in pairs) for key in pairs[0][1]}
            ratio = median(q["rt_per_s"] / r["rt_per_s"] for r, q in pairs)
            print(
                f"{loop_kind:<9}{callers:>8}{raw['rt_per_s']:>11,.0f}{rpc['rt_per_s']:>11,.0f}{ratio:>7.2f}"
                f"{_cpu(raw):>15}{_cpu(rpc):>15}",
                flush=True,
            )
            figures[f"{loop_kind}_{callers}"] = {
                "raw_rt_per_s": round(raw["rt_per_s"]),
                "rpc_rt_per_s": round(rpc["rt_per_s"]),
                "ratio": round(ratio, 3),
                "ratios": [round(q["rt_per_s"] / r["rt_per_s"], 3) for r, q in pairs],
                "raw_cpu_us_per_rt": {
                    "client": round(raw["client_cpu_us"], 1),
                    "server": round(raw["server_cpu_us"], 1),
                },
                "rpc_cpu_us_per_rt": {
                    "client": round(rpc["client_cpu_us"], 1),
                    "server": round(rpc["server_cpu_us"], 1),
                },
            }
    finish(figures)


if __name__ == "__main__":
    main()
