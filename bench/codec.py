"""Frames encoded and decoded per second, against a json round trip of the same fields.

    .venv/bin/python bench/codec.py --seconds 3
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finish, parser, rate
from pyseata.protocol.enums import BranchType, MessageType
from pyseata.protocol.frame import Frame, FrameDecoder, encode_frame
from pyseata.protocol.messages import BranchRegisterRequest, GlobalBeginRequest, Message

XID = "192.168.0.1:8091:2612341069705662465"
SAMPLES: dict[str, Message] = {
    "GlobalBeginRequest": GlobalBeginRequest(timeout=60000, transaction_name="place-order"),
    "BranchRegisterRequest": BranchRegisterRequest(
        xid=XID,
        branch_type=BranchType.AT,
        resource_id="jdbc:mysql://127.0.0.1:3306/order",
        lock_key="t_order:1001,1002,1003;t_order_item:5001_A,5002_B",
        application_data='{"autoCommit":false,"skipCheckLock":true}',
    ),
}


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    figures: dict[str, object] = {"seconds": args.seconds}
    print(f"{'message':<24}{'encode/s':>12}{'decode/s':>12}{'json rt/s':>12}{'codec rt/s':>12}{'ratio':>8}")
    for name, body in SAMPLES.items():
        frame = Frame(MessageType.REQUEST_SYNC, 12345, body)
        wire = encode_frame(frame)
        decoder = FrameDecoder()
        fields = dataclasses.asdict(body)
        # Baseline: the same fields through the stdlib json module, both ways.
        json_rt = rate(lambda f=fields: json.loads(json.dumps(f)), args.seconds)
        enc = rate(lambda fr=frame: encode_frame(fr), args.seconds)
        dec = rate(lambda w=wire, d=decoder: d.feed(w), args.seconds)
        codec_rt = rate(lambda fr=frame, d=decoder: d.feed(encode_frame(fr)), args.seconds)
        ratio = codec_rt / json_rt
        print(f"{name:<24}{enc:>12,.0f}{dec:>12,.0f}{json_rt:>12,.0f}{codec_rt:>12,.0f}{ratio:>8.2f}")
        figures[name] = {
            "bytes": len(wire), "encode_per_s": round(enc), "decode_per_s": round(dec),
            "json_round_trip_per_s": round(json_rt), "codec_round_trip_per_s": round(codec_rt),
            "ratio_vs_json": round(ratio, 3),
        }
    finish(figures)


if __name__ == "__main__":
    main()
