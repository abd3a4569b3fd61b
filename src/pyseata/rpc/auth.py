"""Optional shared-secret authentication at registration.

Seata's clients put ``ak=<accessKey>``, ``digest=<signature>`` and ``timestamp=<ms>`` lines in the
registration's extraData; the signature is over ``"<group>,<ip>,<timestamp>"``. Seata's default
signer leaves it unsigned and the open-source TC does not check it. With a secret configured,
pyseata signs with HMAC-SHA256 (base64) and the TC checks the signature and a time window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

__all__ = ["Credentials", "parse_extra_data", "sign", "verify"]


@dataclass(frozen=True, slots=True)
class Credentials:
    secret: str
    access_key: str | None = None
    max_skew_ms: int = 5 * 60 * 1000


def parse_extra_data(extra_data: str | None) -> dict[str, str]:
    """``key=value`` lines, each ended by a newline (Seata's RegisterTMRequest.extraData)."""
    result: dict[str, str] = {}
    for line in (extra_data or "").split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result


def sign(secret: str, group: str, ip: str, timestamp_ms: int) -> str:
    data = f"{group},{ip},{timestamp_ms}".encode()
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


def signed_extra_data(creds: Credentials, group: str, ip: str, now_ms: int | None = None) -> str:
    timestamp = int(time.time() * 1000) if now_ms is None else now_ms
    # Java writes "ak=null" when no access key is configured; "None" would be a Python-ism.
    access_key = creds.access_key if creds.access_key is not None else "null"
    return (
        f"ak={access_key}\ndigest={sign(creds.secret, group, ip, timestamp)}\n"
        f"timestamp={timestamp}\nauthVersion=V4\nvgroup={group}\nip={ip}\n"
    )


def verify(creds: Credentials, group: str, extra_data: str | None, now_ms: int | None = None) -> str | None:
    """None when the registration is authentic, else the reason it is not."""
    fields = parse_extra_data(extra_data)
    digest, stamp, ip = fields.get("digest"), fields.get("timestamp", ""), fields.get("ip", "")
    # Checked first: a client with no credentials configured should hear that, not "unknown key".
    if not digest or not stamp.isdigit():
        return "registration carries no signature (digest and timestamp)"
    if creds.access_key is not None and fields.get("ak") != creds.access_key:
        return "unknown access key"
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - int(stamp)) > creds.max_skew_ms:
        return "signature timestamp outside the allowed window (check the client's clock)"
    expected = sign(creds.secret, group, ip, int(stamp))
    if not hmac.compare_digest(expected, digest):
        return "bad signature (the client's secret differs from the server's)"
    return None
