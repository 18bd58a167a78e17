"""Our SDP offer, made to name RFC 2833 telephone-events by the payload type the trunk expects.

PJSIP numbers telephone-event 120 in the offers it makes, fixed when it is compiled; most trunks,
phones and test tools (sipp's DTMF recordings among them) use 101, and some send their key
presses with 101 whatever the offer said. An RTP packet of another type than the one offered is
not read as a key, so the offer is rewritten before it is sent: a pure text change on the
``m=audio`` line, its ``rtpmap`` and its ``fmtp``.
"""

from __future__ import annotations

import re
from typing import Final

_EVENT: Final = re.compile(r"^a=rtpmap:(\d+) telephone-event/8000\s*$", re.IGNORECASE)
_RTPMAP: Final = re.compile(r"^a=rtpmap:(\d+) ")


def with_event_payload(sdp: str, payload_type: int) -> str:
    """``sdp`` with its 8 kHz telephone-event numbered ``payload_type``; unchanged when it has
    none, already uses that number, or another format of the offer holds the number."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(newline)
    old = next((m.group(1) for line in lines if (m := _EVENT.match(line))), None)
    new = str(payload_type)
    if old is None or old == new:
        return sdp
    if any((m := _RTPMAP.match(line)) and m.group(1) == new for line in lines):
        return sdp
    rewritten = []
    for line in lines:
        changed = line
        if line.startswith("m=audio "):
            head, *formats = line.split(" ")
            # "m=audio <port> <proto> <fmt>…": only the formats after the first three fields.
            fields = [head, *formats[:2], *(new if f == old else f for f in formats[2:])]
            changed = " ".join(fields)
        elif line.startswith((f"a=rtpmap:{old} ", f"a=fmtp:{old} ")):
            changed = line.replace(f":{old} ", f":{new} ", 1)
        rewritten.append(changed)
    return newline.join(rewritten)
