"""The XID context: binding, suspension, and hygiene across threads, pools and asyncio tasks."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pyseata.client.context import (
    ContextExecutor,
    XidLogFilter,
    bind,
    bind_branch_type,
    bound,
    get_branch_type,
    get_xid,
    global_lock,
    in_global_transaction,
    requires_global_lock,
    resume,
    suspend,
    unbind,
    unbind_branch_type,
    with_context,
)
from pyseata.protocol.enums import BranchType

OUTER, INNER = "127.0.0.1:8091:1", "127.0.0.1:8091:2"


def test_nothing_is_bound_at_first() -> None:
    assert get_xid() is None
    assert not in_global_transaction()


def test_bind_and_unbind_restore_the_previous_xid_exactly() -> None:
    outer = bind(OUTER)
    inner = bind(INNER)
    assert get_xid() == INNER
    assert unbind(inner) == INNER
    assert get_xid() == OUTER
    assert unbind(outer) == OUTER
    assert get_xid() is None


def test_unbind_without_token_leaves_nothing_bound() -> None:
    token = bind(OUTER)
    assert unbind() == OUTER
    assert get_xid() is None
    unbind(token)


@pytest.mark.parametrize("bad", ["", None, 42])
def test_bind_refuses_what_is_not_an_xid(bad: object) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        bind(bad)  # type: ignore[arg-type]


def test_bound_restores_even_when_the_block_raises() -> None:
    with bound(OUTER):
        with pytest.raises(RuntimeError), bound(INNER):
            assert get_xid() == INNER
            raise RuntimeError
        assert get_xid() == OUTER
        with bound(None):  # a block outside any transaction
            assert get_xid() is None
        assert get_xid() == OUTER
    assert get_xid() is None


def test_suspend_puts_xid_and_branch_type_aside_until_resume() -> None:
    with bound(OUTER):
        token = bind_branch_type(BranchType.TCC)
        held = suspend()
        assert (get_xid(), get_branch_type()) == (None, None)
        resume(held)
        assert (get_xid(), get_branch_type()) == (OUTER, BranchType.TCC)
        unbind_branch_type(token)
    assert get_branch_type() is None


def test_global_lock_flag_is_scoped() -> None:
    assert not requires_global_lock()
    with global_lock():
        assert requires_global_lock()
    assert not requires_global_lock()


def test_a_new_thread_starts_with_no_xid() -> None:
    seen: list[str | None] = []
    with bound(OUTER):
        thread = threading.Thread(target=lambda: seen.append(get_xid()))
        thread.start()
        thread.join()
    assert seen == [None]


def test_with_context_carries_the_callers_xid_into_a_thread() -> None:
    seen: list[str | None] = []
    with bound(OUTER):
        job = with_context(lambda: seen.append(get_xid()))
    thread = threading.Thread(target=job)  # bound when wrapped, not when run
    thread.start()
    thread.join()
    assert seen == [OUTER]


# --- thread pools -------------------------------------------------------------------------------------


def _bind_and_forget(xid: str) -> str | None:
    seen = get_xid()
    bind(xid)  # a job that never unbinds: the classic leak
    return seen


def test_a_plain_pool_leaks_a_binding_into_the_next_job_on_the_worker() -> None:
    # Why ContextExecutor exists: this is what happens without it.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(_bind_and_forget, OUTER).result() is None
        assert pool.submit(get_xid).result() == OUTER


def test_context_executor_shows_the_callers_xid_and_leaks_nothing_to_the_next_job() -> None:
    with ContextExecutor(ThreadPoolExecutor(1)) as pool:  # one worker: both jobs run on it
        with bound(OUTER):
            first = pool.submit(_bind_and_forget, INNER)
        assert first.result() == OUTER
        assert pool.submit(get_xid).result() is None
        workers = pool.submit(threading.get_ident).result(), pool.submit(threading.get_ident).result()
        assert workers[0] == workers[1]
    assert get_xid() is None


def test_context_executor_keeps_concurrent_submitters_apart() -> None:
    results: dict[str, list[str | None]] = {}

    def submitter(xid: str, pool: ContextExecutor) -> None:
        with bound(xid):
            results[xid] = [pool.submit(get_xid).result() for _ in range(20)]

    with ContextExecutor(ThreadPoolExecutor(2)) as pool:
        threads = [threading.Thread(target=submitter, args=(f"tc:1:{i}", pool)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {f"tc:1:{i}": [f"tc:1:{i}"] * 20 for i in range(4)}


# --- asyncio ----------------------------------------------------------------------------------------


async def test_task_group_children_inherit_the_xid_and_their_bindings_stay_inside() -> None:
    seen: list[str | None] = []

    async def child(rebind: str | None) -> None:
        seen.append(get_xid())
        if rebind is not None:
            bind(rebind)  # never unbound: must not reach the parent or a sibling
        await asyncio.sleep(0)
        seen.append(get_xid())

    with bound(OUTER):
        async with asyncio.TaskGroup() as group:
            group.create_task(child(INNER))
            group.create_task(child(None))
        assert get_xid() == OUTER
    assert sorted(seen, key=str) == sorted([OUTER, INNER, OUTER, OUTER], key=str)
    assert get_xid() is None


async def test_concurrent_tasks_each_keep_their_own_xid_across_awaits() -> None:
    async def work(i: int) -> list[str | None]:
        seen = []
        with bound(f"tc:1:{i}"):
            for _ in range(10):
                await asyncio.sleep(0)  # interleave with every other task
                seen.append(get_xid())
        seen.append(get_xid())
        return seen

    results = await asyncio.gather(*(work(i) for i in range(20)))
    assert results == [[f"tc:1:{i}"] * 10 + [None] for i in range(20)]


async def test_to_thread_carries_the_tasks_xid() -> None:
    with bound(OUTER):
        assert await asyncio.to_thread(get_xid) == OUTER


def test_log_filter_puts_the_xid_on_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("pyseata.test.xidfilter")
    log_filter = XidLogFilter()
    logger.addFilter(log_filter)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            with bound(OUTER):
                logger.info("inside")
            logger.info("outside")
    finally:
        logger.removeFilter(log_filter)
    ours = [r for r in caplog.records if r.name == logger.name]  # a session-wide TC may log meanwhile
    assert [getattr(r, "xid", None) for r in ours] == [OUTER, "-"]
