"""Global transaction ids (XIDs): ``<tc-host>:<tc-port>:<transactionId>`` as Seata's ``XID`` class.

The TC's own address is in the XID, so a client can send commit and rollback back to the TC that
began the transaction (BEHAVIOUR.md 1.1).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pyseata.errors import PyseataError

__all__ = ["InvalidXidError", "Xid", "format_xid", "parse_xid"]

_INT64_MAX = 2**63 - 1
_PORT = re.compile(r"[0-9]{1,5}")
_ID = re.compile(r"-?[0-9]{1,20}")  # a Java long as Seata writes it


class InvalidXidError(PyseataError, ValueError):
    """A string is not a Seata XID."""


class Xid(NamedTuple):
    host: str
    port: int
    transaction_id: int

    def __str__(self) -> str:
        return format_xid(self.host, self.port, self.transaction_id)

    @property
    def address(self) -> str:
        """``host:port`` of the TC that owns this transaction."""
        return f"{self.host}:{self.port}"


def format_xid(host: str, port: int, transaction_id: int) -> str:
    return f"{host}:{port}:{transaction_id}"


def parse_xid(xid: str) -> Xid:
    """Splits an XID; the transaction id is the long after the last ':' as in Java.

    Raises :class:`InvalidXidError` naming what is wrong.
    """
    parts = xid.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise InvalidXidError(f"XID {xid!r} is not of the form host:port:transactionId")
    host, port_text, id_text = parts
    # ASCII digits only: int() would also take " 5", "1_2", "+5" and other scripts' digits.
    if _PORT.fullmatch(port_text) is None or not 0 < int(port_text) < 65536:
        raise InvalidXidError(f"XID {xid!r} has an invalid port {port_text!r}")
    if _ID.fullmatch(id_text) is None:
        raise InvalidXidError(f"XID {xid!r} has a non-numeric transaction id {id_text!r}")
    transaction_id = int(id_text)
    if not -_INT64_MAX - 1 <= transaction_id <= _INT64_MAX:
        raise InvalidXidError(f"XID {xid!r} has a transaction id outside the 64-bit range")
    return Xid(host, int(port_text), transaction_id)
