"""Telling a person when a transaction stops in a state only a person can resolve."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request

from pyseata.protocol.enums import GlobalStatus

__all__ = ["Alerter"]

log = logging.getLogger("pyseata.tc.alert")


class Alerter:
    """Logs at error level, and POSTs a JSON document to a webhook when one is configured."""

    def __init__(self, webhook: str | None = None, timeout: float = 5.0) -> None:
        self.webhook = webhook
        self.timeout = timeout
        self.sent = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def alert(self, xid: str, status: GlobalStatus, reason: str) -> None:
        log.error("xid=%s needs an operator: %s (%s). Inspect it with `pyseata tx show %s`; "
                  "fix the data, then retry or end it from the console.", xid, status.name, reason, xid)
        self.sent += 1
        if self.webhook:
            doc = {"xid": xid, "status": status.name, "reason": reason, "time_ms": int(time.time() * 1000)}
            task = asyncio.get_running_loop().create_task(self._post(doc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, doc: dict[str, object]) -> None:
        assert self.webhook is not None
        data = json.dumps(doc).encode()
        request = urllib.request.Request(self.webhook, data=data, headers={"Content-Type": "application/json"})
        try:
            await asyncio.to_thread(self._send, request)
        except Exception as exc:
            log.warning("alert webhook %s failed for xid=%s: %s", self.webhook, doc["xid"], exc)

    def _send(self, request: urllib.request.Request) -> None:
        # Read and close the response: an unclosed one keeps its socket until garbage collection.
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
