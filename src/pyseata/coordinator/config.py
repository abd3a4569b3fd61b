"""The TC's behaviour settings (timings, limits, recovery policy)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CoordinatorConfig"]


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """What the coordinator needs to know; the server command fills it from file, env and flags.

    Times are in seconds unless the name ends in ``_ms``.
    """

    advertise_host: str = "127.0.0.1"  # the host put in XIDs: clients send commit/rollback there
    advertise_port: int = 8091
    worker_id: int | None = None  # id generator worker (0..1023); set it per node with several TCs
    default_timeout_ms: int = 60_000  # for a begin that asks for no (or a non-positive) timeout
    branch_request_timeout: float = 15.0  # TC -> RM BranchCommit/BranchRollback (Seata: 15 s)
    # An RM that let a branch request time out gets no more for this long (then one probe), so a
    # hung RM cannot tie up phase two for everyone else (Seata waits 15 s per branch). 0: off.
    unresponsive_rm_cooldown: float = 5.0
    # Final statuses of the transactions this TC ended lately, so that a TM repeating a commit or
    # rollback (its first answer was lost) hears how it ended instead of Seata's Finished. 0: off.
    finished_outcomes_kept: int = 100_000
    # Recovery (Seata retries every second forever; we back off and can give up, loudly).
    retry_period: float = 1.0  # how often the recovery loops scan
    retry_backoff_max: float = 30.0  # cap of the per-transaction exponential backoff
    max_commit_retry_ms: int | None = None  # None: retry forever; else stop in CommitRetryTimeout
    max_rollback_retry_ms: int | None = None  # None: retry forever; else stop in RollbackRetryTimeout
    rollback_retry_timeout_unlock: bool = False  # release the rows when rollback retries give up
    dead_session_ms: int = 10_000  # Committing/Rollbacking untouched this long: re-drive (crashed TC)
    xaer_nota_retry_timeout_ms: int = 60_000
    async_commit_workers: int = 32  # phase two of AT commits runs at once, not on the next tick
    # Most AT commits waiting for (or in) phase two before a commit answer waits for room: phase
    # two then keeps pace with phase one instead of falling behind without bound (Seata's weak
    # point under load). The decision is durable before the wait, so waiting is safe.
    async_commit_backlog: int = 1024
    # ...but never longer than this (seconds): an RM that hangs must not stall every TM for good.
    async_commit_backlog_wait: float = 5.0
    scan_limit: int = 1000  # rows per recovery scan (Seata's store.db.queryLimit)
    undo_log_save_days: int = 7
    undo_log_delete_period: float = 86_400.0
    alert_webhook: str | None = None  # POSTed a JSON document when a transaction needs a person
    task_lock_ttl_ms: int = 10_000  # distributed task locks, for several TCs on one store
