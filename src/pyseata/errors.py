"""The one exception tree of pyseata.

Every error pyseata raises derives from :class:`PyseataError`. Where a caller would naturally
catch a standard library type (``TimeoutError``, ``ConnectionError``, ``ValueError``) the pyseata
class inherits it too, as httpx and asyncpg do.
"""

from __future__ import annotations

from pyseata.protocol.enums import TransactionExceptionCode

__all__ = [
    "CompressorUnavailableError",
    "ConfigError",
    "ConnectionClosedError",
    "FrameTooLargeError",
    "LocalProtocolError",
    "ProtocolError",
    "PyseataError",
    "RemoteProtocolError",
    "RpcTimeoutError",
    "TransactionError",
    "TransportError",
]


class PyseataError(Exception):
    """Root of every pyseata exception."""


class ConfigError(PyseataError, ValueError):
    """A configuration value is missing or invalid; the message names the key and what is allowed."""


# --- protocol ---------------------------------------------------------------------------------


class ProtocolError(PyseataError):
    """Something is wrong with Seata protocol data."""


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked to encode something the protocol cannot carry (our side's mistake)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not a valid Seata v1 frame or body.

    ``offset`` is the position in the frame (or body) where the problem was found, when known.
    """

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        self.reason = message
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (at byte {offset})")


class FrameTooLargeError(RemoteProtocolError):
    """A frame header announced a length above the configured maximum."""


class CompressorUnavailableError(ProtocolError, ImportError):
    """A compressor needs an optional library that is not installed."""


# --- transport --------------------------------------------------------------------------------


class TransportError(PyseataError, ConnectionError):
    """A connection-level failure."""


class ConnectionClosedError(TransportError):
    """The connection closed (or was closed) while a request was in flight."""


class RpcTimeoutError(PyseataError, TimeoutError):
    """No response arrived within the request's deadline."""


# --- transactions -----------------------------------------------------------------------------


class TransactionError(PyseataError):
    """A transaction-level failure carrying Seata's ``TransactionExceptionCode``.

    This is what travels between TC and clients as ``resultCode=Failed`` plus an exception code;
    the TC turns it into a failed response and the client turns a failed response back into it.
    """

    def __init__(
        self,
        message: str,
        code: TransactionExceptionCode = TransactionExceptionCode.Unknown,
        *,
        xid: str | None = None,
    ) -> None:
        self.code = code
        self.xid = xid
        super().__init__(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, code={self.code.name}, xid={self.xid!r})"
