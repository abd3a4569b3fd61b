"""pyseata: distributed transactions for Python services, wire-compatible with Apache Seata."""

from __future__ import annotations

from pyseata.errors import (
    CompressorUnavailableError,
    ConfigError,
    ConnectionClosedError,
    FrameTooLargeError,
    LocalProtocolError,
    ProtocolError,
    PyseataError,
    RemoteProtocolError,
    RpcTimeoutError,
    TransactionError,
    TransportError,
)

__version__ = "0.1.0"

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
    "__version__",
]
