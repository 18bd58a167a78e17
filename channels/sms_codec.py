"""SMS text on the air: GSM 03.38 or UCS-2, split into concatenated parts, and read back.

Text that fits the GSM 03.38 alphabet goes as GSM (unpacked septets, 160 characters, 153 per part);
anything else as UCS-2 (70 characters, 67 per part; characters outside the BMP travel as UTF-16
surrogate pairs that a split never separates). Longer texts become concatenated parts, each to be
prefixed with the 6-byte UDH ``05 00 03 ref total seq``. Codings are numbered as SMPP's
``data_coding`` numbers them.

Pure functions over bytes and text, for any SMS channel: no I/O, no knowledge of a protocol.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

DATA_CODING_GSM = 0x00
DATA_CODING_UCS2 = 0x08

GSM_SINGLE, GSM_PART = 160, 153  # septets: one message, one part after the 6-octet UDH
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units
MAX_PARTS = 255  # the UDH counts parts in one octet

# GSM 03.38 default alphabet, position = septet value; 0x1B is the escape to the extension table.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_GSM_ENCODE: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_GSM_BASIC) if i != 0x1B}
_GSM_ENCODE.update({ch: bytes([0x1B, code]) for code, ch in _GSM_EXTENSION.items()})
_GSM_DECODE_BASIC = dict(enumerate(_GSM_BASIC))


@dataclass(frozen=True)
class EncodedText:
    """A text ready to send: its coding and the bytes of each part (UDH not yet added)."""

    data_coding: int
    parts: tuple[bytes, ...]

    @property
    def coding_name(self) -> str:
        return "gsm" if self.data_coding == DATA_CODING_GSM else "ucs2"


@functools.lru_cache(maxsize=256)
def encode_text(text: str) -> EncodedText:
    """Pure: GSM 03.38 when every character has a GSM code, else UCS-2; split into parts.

    Cached: one warning sends the same text to thousands of phones.
    """
    if all(ch in _GSM_ENCODE for ch in text):
        septets = [_GSM_ENCODE[ch] for ch in text]
        if sum(len(s) for s in septets) <= GSM_SINGLE:
            return EncodedText(DATA_CODING_GSM, (b"".join(septets),))
        return EncodedText(DATA_CODING_GSM, _pack(septets, GSM_PART))
    units = text.encode("utf-16-be")
    if len(units) <= UCS2_SINGLE * 2:
        return EncodedText(DATA_CODING_UCS2, (units,))
    # One "character" per BMP code point, two units for one outside it: never split a pair.
    chars = [ch.encode("utf-16-be") for ch in text]
    return EncodedText(DATA_CODING_UCS2, _pack(chars, UCS2_PART * 2))


def _pack(pieces: Sequence[bytes], capacity: int) -> tuple[bytes, ...]:
    """Greedy: consecutive indivisible pieces into parts of at most ``capacity`` bytes."""
    parts: list[bytes] = []
    current = bytearray()
    for piece in pieces:
        if len(current) + len(piece) > capacity:
            parts.append(bytes(current))
            current = bytearray()
        current += piece
    if current:
        parts.append(bytes(current))
    return tuple(parts)


def with_udh(part: bytes, reference: int, total: int, sequence: int) -> bytes:
    """A part prefixed with the concatenation UDH (IEI 0x00, 8-bit reference)."""
    return bytes((0x05, 0x00, 0x03, reference & 0xFF, total, sequence)) + part


def decode_gsm(data: bytes) -> tuple[str, bool]:
    """Unpacked GSM 03.38 septets to text; the flag says whether any byte was not valid."""
    out: list[str] = []
    clean = True
    escape = False
    for byte in data:
        if escape:
            escape = False
            ch = _GSM_EXTENSION.get(byte)
            if ch is None:
                clean = False
                ch = _GSM_DECODE_BASIC.get(byte, "\ufffd")
            out.append(ch)
        elif byte == 0x1B:
            escape = True
        elif byte < 0x80:
            out.append(_GSM_DECODE_BASIC[byte])
        else:
            clean = False
            out.append("\ufffd")
    return "".join(out), clean and not escape


# IA5/ASCII, Latin-1, UCS-2 and GBK (15, which Chinese SMS centres use for replies).
_TEXT_CODINGS = {0x01: "ascii", 0x03: "latin-1", 0x08: "utf-16-be", 0x0F: "gbk"}


def decode_text(data: bytes, data_coding: int) -> tuple[str, bool]:
    """Pure: a short message's text; the flag is False when bytes did not fit the coding.

    Raises LookupError for a ``data_coding`` this codec cannot read.
    """
    if data_coding == DATA_CODING_GSM:
        return decode_gsm(data)
    codec = _TEXT_CODINGS.get(data_coding)
    if codec is None:
        raise LookupError(f"data_coding 0x{data_coding:02X}")
    try:
        return data.decode(codec), True
    except UnicodeDecodeError:
        return data.decode(codec, errors="replace"), False
