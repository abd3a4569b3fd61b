"""How recently finished transactions ended, for a TM that asks again.

Seata answers Finished for every XID it no longer has, so a TM whose commit response was lost and
that retries the commit hears Finished and cannot tell committed from rolled back (our TM raises
CommitHeuristicError for it). The TC removes a session from its store the moment phase two ends,
so it remembers the final status of the last transactions it ended here (a bounded table in
memory, oldest forgotten first) and answers a repeated commit or rollback with it. After a TC
restart the table is empty and the answer is Finished again, as in Seata.
"""

from __future__ import annotations

from collections import OrderedDict

from pyseata.protocol.enums import GlobalStatus

__all__ = ["FinishedOutcomes"]


class FinishedOutcomes:
    """The final status of at most ``capacity`` transactions this TC ended, by XID."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ended: OrderedDict[str, GlobalStatus] = OrderedDict()

    def __repr__(self) -> str:
        return f"<FinishedOutcomes {len(self._ended)}/{self.capacity}>"

    def __len__(self) -> int:
        return len(self._ended)

    def ended(self, xid: str, status: GlobalStatus) -> None:
        if self.capacity <= 0:
            return
        self._ended[xid] = status
        if len(self._ended) > self.capacity:
            self._ended.popitem(last=False)

    def answer(self, xid: str) -> GlobalStatus:
        """What to tell a TM asking about ``xid`` that the store no longer has."""
        return self._ended.get(xid, GlobalStatus.Finished)
