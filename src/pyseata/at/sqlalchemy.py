"""AT mode for SQLAlchemy 2 engines, through SQLAlchemy's event API (no monkeypatching).

::

    from pyseata.at.sqlalchemy import instrument

    engine = create_engine("postgresql+psycopg://app@db/orders")
    instrument(engine, resource_id="orders-db")      # once, at start-up

    with global_transaction():                       # unchanged application code:
        with Session(engine) as session:             # ORM sessions and Core connections alike
            session.get(Stock, sku).qty -= 1
            session.commit()                         # -> an AT branch: undo log, global locks

:func:`instrument` listens to the engine's ``do_connect`` event and hands the pool an AT proxy
(:class:`~pyseata.at.dbapi.ATConnection`) around every DBAPI connection it opens, after
disposing of the connections already pooled. SQLAlchemy then drives the proxy as any DBAPI
connection: its cursors cover statements inside global transactions (and :func:`global_lock`),
its ``commit`` registers the branch, its ``rollback`` (also the pool's reset on return) forgets
the local transaction. Outside a global transaction the proxy passes every call straight through.

The DBAPI drivers are those of :mod:`pyseata.at.dbapi`: ``sqlite`` (pysqlite), ``mysql+pymysql``
(MySQL, MariaDB) and ``postgresql+psycopg``. Phase two opens its own connections with the engine's
dialect and URL (the engine's ``connect`` event listeners do not run on them).
"""

from __future__ import annotations

from typing import Any

from pyseata.at.connection import LockRetry
from pyseata.at.dbapi import ATConnection, driver_of
from pyseata.at.executor import DEFAULT_LOCK_RETRY, DEFAULT_UNDO
from pyseata.at.resource import DataSource
from pyseata.at.undo import UndoConfig
from pyseata.client.context import bound

__all__ = ["instrument", "uninstrument"]

_LISTENERS: dict[int, tuple[Any, Any]] = {}  # id(engine) -> (engine, listener)


def instrument(
    engine: Any,
    *,
    resource_id: str | None = None,
    undo: UndoConfig = DEFAULT_UNDO,
    lock_retry: LockRetry = DEFAULT_LOCK_RETRY,
    commit_delay: float = 1.0,
) -> DataSource:
    """Cover ``engine``'s connections with AT mode; returns the resource (declared to the RM).

    ``resource_id`` defaults to one derived from the database (file, or host, port and database).
    Calling it again for the same engine returns the same resource.
    """
    from sqlalchemy import event

    known = _LISTENERS.get(id(engine))
    if known is not None and known[0] is engine:
        source: DataSource = known[1].data_source
        return source
    dialect = engine.dialect
    cargs, cparams = dialect.create_connect_args(engine.url)

    def open_raw() -> Any:
        return dialect.connect(*cargs, **cparams)

    source = DataSource(open_raw, resource_id=resource_id, undo=undo, lock_retry=lock_retry,
                        commit_delay=commit_delay)
    listener = _Connect(source)
    event.listen(engine, "do_connect", listener)
    _LISTENERS[id(engine)] = (engine, listener)
    engine.dispose()  # connections pooled before now are plain: let new, covered ones replace them
    with bound(None):  # the dialect's first-connect set-up runs now, outside any global transaction
        engine.connect().close()
    return source


def uninstrument(engine: Any) -> None:
    """Stop covering ``engine`` (pooled connections are disposed of) and close its resource."""
    from sqlalchemy import event

    known = _LISTENERS.pop(id(engine), None)
    if known is None or known[0] is not engine:
        return
    event.remove(engine, "do_connect", known[1])
    engine.dispose()
    known[1].data_source.close()


class _PooledATConnection(ATConnection):
    """The proxy as SQLAlchemy's pool holds it. Dialects hand the pooled connection to driver
    functions that check its class (psycopg's ``TypeInfo.fetch`` wants a ``psycopg.Connection``),
    so it reports the driver connection's class, as transparent object proxies do; everything it
    does not define still reaches the driver connection."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._raw)


class _Connect:
    """The ``do_connect`` listener: the DBAPI connection, wrapped in an AT proxy."""

    def __init__(self, data_source: DataSource) -> None:
        self.data_source = data_source

    def __call__(self, dialect: Any, _conn_rec: Any, cargs: list[Any], cparams: dict[str, Any]) -> ATConnection:
        raw = dialect.connect(*cargs, **cparams)
        driver_of(raw)  # refuse a driver AT mode does not know, with its name
        return _PooledATConnection(raw, self.data_source)
