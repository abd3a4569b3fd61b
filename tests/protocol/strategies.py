"""Hypothesis strategies for every message and frame, built from the records' type hints."""

from __future__ import annotations

from dataclasses import fields, replace
from enum import Enum
from typing import Any, get_args, get_type_hints

from hypothesis import strategies as st

from pyseata.protocol import codec
from pyseata.protocol import messages as m
from pyseata.protocol.enums import CompressorType, MessageType, ResultCode

I16 = st.integers(-(2**15), 2**15 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
INT_FIELDS = {"timeout": I32, "branch_id": I64, "save_days": I16}
TEXT = st.text(max_size=40)  # any unicode, including "" and non-ASCII
NON_EMPTY = st.text(min_size=1, max_size=40)

# Fields where an empty string makes Java's decoder stop reading: keep them non-empty in round
# trips (the stop behaviour has its own tests).
STOP_FIELDS: dict[type[m.Message], set[str]] = {
    m.RegisterRMRequest: {"version"},
    m.RegisterTMResponse: {"version"},
    m.RegisterRMResponse: {"version"},
    m.BranchCommitRequest: {"xid", "resource_id"},
    m.BranchRollbackRequest: {"xid", "resource_id"},
    m.UndoLogDeleteRequest: {"resource_id"},
}
CONTAINERS = (m.MergedWarpMessage, m.MergeResultMessage, m.BatchResultMessage)
SIMPLE = [cls for cls in m.MESSAGE_CLASSES.values() if cls in codec.LAYOUTS]
REQUESTS = [cls for cls in SIMPLE if not issubclass(cls, m.AbstractResultMessage | m.AbstractIdentifyResponse)]
RESULTS = [cls for cls in SIMPLE if issubclass(cls, m.AbstractResultMessage)]


def _field_strategy(cls: type[m.Message], name: str, hint: Any) -> st.SearchStrategy[Any]:
    args = get_args(hint)
    enums = [a for a in (hint, *args) if isinstance(a, type) and issubclass(a, Enum)]
    if enums:
        base: st.SearchStrategy[Any] = st.sampled_from(list(enums[0]))
        return st.one_of(st.none(), base) if type(None) in args else base
    if hint is bool:
        return st.booleans()
    if hint is int:
        return INT_FIELDS[name]
    if name in STOP_FIELDS.get(cls, set()):
        return NON_EMPTY
    return st.one_of(st.none(), TEXT)


def simple_message(cls: type[m.Message]) -> st.SearchStrategy[m.Message]:
    hints = get_type_hints(cls)
    return st.builds(cls, **{f.name: _field_strategy(cls, f.name, hints[f.name]) for f in fields(cls)})


def any_simple(classes: list[type[m.Message]]) -> st.SearchStrategy[m.Message]:
    return st.one_of([simple_message(cls) for cls in classes])


@st.composite
def container(draw: st.DrawFn) -> m.Message:
    cls = draw(st.sampled_from(CONTAINERS))
    items = draw(st.lists(any_simple(REQUESTS if cls is m.MergedWarpMessage else RESULTS), max_size=5))
    ids = tuple(draw(st.lists(I32, min_size=len(items), max_size=len(items))))
    if cls is m.MergedWarpMessage:
        return m.MergedWarpMessage(tuple(items), draw(st.sampled_from([ids, None])) if items else None)
    if cls is m.MergeResultMessage:
        return m.MergeResultMessage(tuple(items))  # type: ignore[arg-type]
    return m.BatchResultMessage(tuple(items), ids)  # type: ignore[arg-type]


def any_message() -> st.SearchStrategy[m.Message]:
    return st.one_of(any_simple(SIMPLE), container())


def wire_normal(msg: m.Message) -> m.Message:
    """What ``msg`` reads back as: the wire cannot tell None from "", and ``msg`` travels only
    with failures."""
    if isinstance(msg, m.MergedWarpMessage):
        return replace(msg, msgs=tuple(wire_normal(x) for x in msg.msgs), msg_ids=msg.msg_ids or None)
    if isinstance(msg, m.MergeResultMessage):
        return replace(msg, msgs=tuple(wire_normal(x) for x in msg.msgs))  # type: ignore[misc]
    if isinstance(msg, m.BatchResultMessage):
        return replace(msg, result_messages=tuple(wire_normal(x) for x in msg.result_messages))  # type: ignore[misc]
    changes: dict[str, Any] = {}
    empty_is_text = isinstance(msg, m.RegisterTMRequest)
    for f in fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, str) or (value is None and f.type in ("str | None",)):
            if empty_is_text:
                changes[f.name] = value or ""
            elif not value:
                changes[f.name] = None
    if isinstance(msg, m.RegisterRMRequest) and changes.get("transaction_service_group", 1) is None:
        changes["transaction_service_group"] = ""
    if isinstance(msg, m.AbstractResultMessage):
        changes["msg"] = (msg.msg or None) if msg.result_code == ResultCode.Failed else None
    return replace(msg, **changes)


COMPRESSORS = [c for c in CompressorType if c != CompressorType.SEVENZ]
HEAD_MAPS = st.dictionaries(TEXT, st.one_of(st.none(), TEXT), max_size=3)
BODY_TYPES = [MessageType.REQUEST_SYNC, MessageType.RESPONSE, MessageType.REQUEST_ONEWAY]
