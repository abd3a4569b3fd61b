"""SQLAlchemy 2 engines covered by AT mode through the event API: ORM sessions and Core
connections inside global_transaction commit and roll back as AT branches, on SQLite,
PostgreSQL (psycopg) and MariaDB (PyMySQL), with the application code unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at import DataSource

from . import test_executor_support as support
from .conftest import MYSQL, Db
from .test_executor_support import create_accounts, undo_rows, wait_until

sqlalchemy = pytest.importorskip("sqlalchemy")
from sqlalchemy import Integer, String, create_engine, select, text, update  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

from pyseata.at.sqlalchemy import instrument, uninstrument  # noqa: E402

tc, runtime, _forget_resources = support.tc, support.runtime, support._forget_resources  # fixtures


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    balance: Mapped[int] = mapped_column(Integer)


class RollMeBackError(Exception):
    pass


def url(db: Db) -> str:
    if db.kind == "sqlite":
        path = next(str(r[2]) for r in db.conn.execute("PRAGMA database_list").fetchall() if r[1] == "main")
        return f"sqlite:///{path}"
    if db.kind == "postgres":
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{db.namespace}"
    return f"mysql+pymysql://{MYSQL['user']}@{MYSQL['host']}:{MYSQL['port']}/{db.namespace}"


@pytest.fixture
def engine(db: Db) -> Iterator[Any]:
    create_accounts(db)
    for i, (owner, balance) in enumerate([("ann", 100), ("bob", 50)], start=1):
        db.run(f"INSERT INTO account VALUES ({db.p}, {db.p}, {db.p})", (i, owner, balance))
    made = create_engine(url(db))
    source = instrument(made, resource_id=f"at-sa-{db.kind}-{db.namespace or id(db)}", commit_delay=0.05)
    source.create_undo_log_table()
    yield made
    uninstrument(made)
    made.dispose()


def state(db: Db) -> list[tuple[Any, ...]]:
    return db.run("SELECT id, owner, balance FROM account ORDER BY id")


def orm_work(engine: Any) -> None:
    with Session(engine) as session:
        ann = session.get(Account, 1)
        assert ann is not None
        ann.balance -= 10
        session.add(Account(id=3, owner="cy", balance=10))
        session.delete(session.get(Account, 2))
        session.commit()


def test_orm_session_commit_and_rollback(db: Db, engine: Any, runtime: seata.ClientRuntime) -> None:
    start = state(db)
    with pytest.raises(RollMeBackError), seata.global_transaction():
        orm_work(engine)
        assert state(db) == [(1, "ann", 90), (3, "cy", 10)]
        assert undo_rows(db) == 1
        raise RollMeBackError
    assert state(db) == start
    with seata.global_transaction():
        orm_work(engine)
    assert state(db) == [(1, "ann", 90), (3, "cy", 10)]
    wait_until(lambda: undo_rows(db) == 0, "the committed branch's undo log is deleted")


def test_core_connection(db: Db, engine: Any, runtime: seata.ClientRuntime) -> None:
    with pytest.raises(RollMeBackError), seata.global_transaction():
        with engine.begin() as conn:
            conn.execute(update(Account).where(Account.id == 1).values(balance=Account.balance * 2))
            assert conn.execute(select(Account.balance).where(Account.id == 1)).scalar_one() == 200
        raise RollMeBackError
    assert state(db)[0] == (1, "ann", 100)
    with engine.connect() as conn:  # outside: plain, as without pyseata
        conn.execute(text("UPDATE account SET balance = 1 WHERE id = 2"))
        conn.commit()
    assert state(db)[1] == (2, "bob", 1)
    assert undo_rows(db) == 0


def test_instrument_is_idempotent(db: Db, engine: Any) -> None:
    assert instrument(engine) is instrument(engine)
    assert isinstance(instrument(engine), DataSource)
