"""What an SMS reply from a responder means: an acknowledgement, field-task progress, or neither.

Call-outs and field tasks (issue 3, items 2 and 4) are answered by text message, and people do not
write to a grammar: ``1``, ``收到，马上转移群众``, ``ａ７确认``, ``已通知5户【张三】``. This module
is the pure reading of one such text. It knows nothing about who sent it or which call-outs are
open; the caller matches the result to call-outs and tasks.

The reading is conservative on purpose. A false acknowledgement stops escalation for someone who
may not be awake, and a false household count misleads the town and county; a text this module
cannot read safely is ``unrecognised`` and reaches the duty officer with its words, which only
costs a repeated call.

How a text is read:

1. At most :data:`MAX_CHARS` characters are read (a cut text loses its last, possibly partial,
   word). The text is NFKC-normalised, so full-width digits, letters and punctuation become ASCII;
   Latin letters are upper-cased; control characters become spaces and invisible format characters
   (zero-width spaces, direction marks) are removed.
2. An auto-reply (自动回复, "auto reply", "out of office") is never an answer, whatever it starts
   with.
3. Signatures are dropped: a ``【…】`` or ``[…]`` block at the end (or at the start), and a short
   name after a dash at the end (``—张三``, ``-- 张三``). A block that holds only a warning code
   (``收到【A7】``) is the code, and a block or name that mentions progress (通知, 完成, 户) is
   kept.
4. **Acknowledgement**: after any leading punctuation, symbols or emoji, the text starts with an
   accepted word (:data:`LATIN_WORDS`, :data:`HAN_WORDS`), optionally after a warning code
   (``A7 收到``). What follows the word decides whether it is one:

   - ``OK``, ``OKAY``, ``Y``, ``YES`` must not run on into other letters or digits
     (``Yesterday``, ``OK1`` are not answers); Chinese text may follow (``OK了``), or a code
     (``OKA7``).
   - ``1`` must be the whole number: ``10``, ``11``, ``1.5``, ``1:30`` are not answers, and ``1``
     followed by Chinese text counts something (``1户`` is progress), unless that text is itself an
     accepted word (``1收到``). A code may follow directly (``1A7``).
   - ``好`` must stand alone or take a particle (``好的``, ``好嘞``, ``好吧``, ``好了``): ``好像``,
     ``好多水`` are not answers. ``好的我不去`` *is* an acknowledgement — in practice 好的 means
     "received", and the rest is for the duty officer to read; ``不好`` is not, since it does not
     start with an accepted word.
   - Any word directly followed by a negation or a question (``确认不了``, ``收到吗``,
     ``收到没有``, ``好不好``) is not an answer. ``收到，不过…`` is one: the word is complete.

   Anything may follow the accepted word after that (``收到，马上转移群众``).
5. **Warning code**: one Latin letter and 1–3 digits (``A7``, ``B12``), found only where a person
   would put it — at the very start, right after the accepted word (``收到A7``, ``1 A7``), or as
   the last word, set apart by a space or punctuation (``已通知5户 A7``) — and only when it is not
   glued to following Chinese text (``B3栋`` is a building, not a code). Two different codes make
   the reply ``unrecognised``: acknowledging only one of them, or all open call-outs, would be a
   guess. ``A71`` is the code A71, never A7 + 1.
6. **Progress** is read clause by clause (clauses end at ``,。;!?、`` and line breaks). A clause
   that negates, doubts, asks or looks ahead (没, 未, 不, 剩, 还有, 差, 吗, 正在, 准备, 马上,
   ``?`` …) says nothing about progress: ``还有3户没通知`` must not count 3. Otherwise:

   - households: a number before 户 or 家 (``5户``, ``五户``, ``二十五户``), or a bare number
     right after 通知/告知/完成/敲门/入户 (``已通知 5``, ``通知了5``). Arabic numbers up to 9999
     and Chinese numerals 1–99 (一…九, 十, 十二, 二十, 二十五, 两) count; ranges (``5-6户``),
     ordinals (``第3户``), fractions (``5/7户``) and vague numbers (``十几户``) do not. If the
     text gives two different counts (``已通知5户，共7户``) ``households`` is None.
   - done: 完成, 完毕, 全部/全都/都 + 通知/告知/完成/到位, 通知完, 已鸣锣, 已敲锣, 已吹哨.
     ``完成5户`` is a count, not "all done".
   - a progress verb without a count or "done" (``已通知``) is still a progress report.

7. The kind: a leading accepted word makes an ``ack`` — and progress in the same text is reported
   too (``收到，已通知5户`` is an ack with ``households=5``), so the caller can record both. Without
   one, progress makes ``progress``. Everything else is ``unrecognised``, with ``code`` filled if
   the text named one (``A7`` alone).

Every :class:`Reply` carries a short ``reason`` in English for the audit log and the duty officer.
:func:`parse_reply` never raises.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Literal, NamedTuple

ReplyKind = Literal["ack", "progress", "unrecognised"]

#: How much of a reply is read. Answers come first; a long text is a message for the duty officer.
MAX_CHARS = 500

#: Latin and digit acknowledgement words, compared after NFKC and upper-casing.
LATIN_WORDS = frozenset({"1", "OK", "OKAY", "Y", "YES"})

#: Chinese acknowledgement words, longest first so that 已收到 is matched whole. 已经收到, 已确认
#: and the traditional forms are the same answer written differently.
HAN_WORDS = ("已经收到", "已收到", "已确认", "已確認", "收到", "确认", "確認", "好")

# Particles that make 好 an answer (好的, 好嘞, 好吧, 好了, 好好好) rather than the start of
# another word (好像, 好多).
_PARTICLES = frozenset("的嘞咧滴啊呀哒吧了勒哈好")

# Right after an accepted word, these turn it into a negation or a question: 确认不了, 收到吗,
# 收到没有, 好不好, 收到了吗. A lone trailing 没 (收到没) asks too; 确认没问题 does not.
_NEGATION_OR_QUESTION = ("不", "吗", "么", "没有", "了吗", "了么", "了没", "否")

# "1" followed by one of these (after a space) counts something: 1 户, 1 个, 1 点.
_UNITS = frozenset("户家人个位名口次点号楼栋组村")

# "1" followed by one of these and a digit is part of a number: 1.5, 1:30, 1/2, 1-2, 1,5.
_NUMBER_JOINERS = frozenset(".:/-~,")

# Chinese text a code may be glued to (A7已通知5, a7确认): the start of an answer or a report.
_PROGRESS_START = re.compile("已|通知|告知|完成|完毕|全部|全都|都|鸣锣|敲锣|吹哨")

_CODE = re.compile(r"[A-Z][0-9]{1,3}")
_CODE_ANY_CASE = re.compile(r"[A-Za-z][0-9]{1,3}")

# An accepted word and a code written together: 1A7, OKA7, YESB12, A7OK. "A71" matches neither
# side (1 is not glued after a code), so it stays the code A71.
_GLUED = re.compile(r"(1|OKAY|OK|YES|Y)([A-Z][0-9]{1,3})|([A-Z][0-9]{1,3})(OKAY|OK|YES|Y)")

# Chinese characters (CJK ideographs and 〇). Written as escapes so the class is plain ASCII.
_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"

# A text is a sequence of runs: Chinese characters, other letters and digits, and everything else
# (spaces, punctuation, symbols, emoji). The three classes cover every character.
_TOKEN = re.compile(f"(?P<han>[{_HAN}]+)|(?P<word>[^\\W_{_HAN}]+)|(?P<sep>[\\W_]+)")

_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)

_AUTO_REPLY = re.compile(r"自动回复|自動回覆|自动答复|AUTO[ -]?REPLY|OUT OF OFFICE")

_BRACKETED_TAIL = re.compile(r"(?:【([^【】]*)】|\[([^\[\]]*)\])\s*$")
_BRACKETED_HEAD = re.compile(r"^\s*(?:【([^【】]*)】|\[([^\[\]]*)\])")
# A dash and a short name without digits (a name with digits is more likely a count or a code).
_DASHED_TAIL = re.compile(r"(?:-{1,2}|[—―–]{1,2})\s*([^-—―–0-9]{1,20}?)\s*$")
_MAX_SIGNATURE = 30
_PROGRESS_HINT = re.compile(r"通知|告知|完成|完毕|到位|户")
_HAS_WORD = re.compile(r"[^\W_]")

# Clause ends. A full stop between digits (1.5) is not one.
_CLAUSE_BREAK = re.compile(r"((?:[,。;!?、\n]|\.(?![0-9]))+)")

# A clause containing any of these is not a statement of progress made: it negates (没通知),
# counts what is left (还有3户, 剩2户, 差1户), asks (完成了吗) or looks ahead (准备通知5户).
_DOUBT = re.compile(
    "没|未|不|无法|剩|还有|差|缺|吗|么|呢"  # negation, what is left, questions
    "|正在|准备|马上|即将|将要|打算|待|尚|仍"  # not yet done
)

_DIGIT_HAN = dict(zip("一二两三四五六七八九", (1, 2, 2, 3, 4, 5, 6, 7, 8, 9), strict=True))

# 0–9999 in Arabic digits, 1–99 in Chinese numerals (两 only on its own: 二十两 is not a number).
_NUMBER = r"(?:[0-9]{1,4}|[一二三四五六七八九]?十[一二三四五六七八九]?|[一二两三四五六七八九])"
# A number must start on its own: not inside a longer number (12, 1.5, 二十五, 一百二十), not the
# end of a range (5-6, 5~6, 5到6, 5/7), not an ordinal (第3) and not inside a code (A7).
_NUMBER_START = r"(?<![0-9A-Z.\-~/第到至几百千万零〇一二两三四五六七八九十])"
# 家 counts households, but 一家人 is "the whole family".
_HOUSEHOLD_UNIT = r"(?:户|家(?!人))"
_COUNT_BEFORE_UNIT = re.compile(f"{_NUMBER_START}(?P<n>{_NUMBER})\\s*{_HOUSEHOLD_UNIT}")
_COUNT_AFTER_VERB = re.compile(
    f"(?:通知|告知|完成|敲门|入户)(?:了|到|完)?\\s*:?\\s*(?P<n>{_NUMBER})"
    f"(?=\\s*{_HOUSEHOLD_UNIT}|[^\\w]|$)"
)
_DONE = re.compile(
    r"(?:全部|全都|都)已?经?(?:通知|告知|完成|完毕|到位)"
    r"|已经?全部"
    r"|(?:通知|告知)(?:完|到位)"
    r"|完毕"
    f"|完成(?!\\s*了?\\s*:?\\s*{_NUMBER})"
    r"|已经?(?:鸣锣|敲锣|吹哨)"
)
_PROGRESS_VERB = re.compile(r"已经?(?:通知|告知|敲门|入户)|(?:通知|告知)了")


@dataclass(frozen=True)
class Reply:
    """What one reply text means."""

    kind: ReplyKind
    code: str | None = None  # the warning short code the text names, upper-case ("A7")
    households: int | None = None  # households notified, when the text states one count
    done: bool = False  # the text says the field task is finished
    text: str = ""  # the original text, unchanged, for the duty officer
    reason: str = ""  # why it was read this way, in a few words


def parse_reply(text: str) -> Reply:
    """Read a responder's SMS reply; never raises. See the module docstring for the rules."""
    if not isinstance(text, str):  # a broken gateway must not become a traceback
        return Reply("unrecognised", reason="not text")
    normalised = _normalise(text)
    body = _strip_signatures(normalised)
    tokens = _tokenise(body)
    refusal = _refusal(text, normalised, tokens)
    if refusal:
        return Reply("unrecognised", text=text, reason=refusal)

    lead = _find_lead(tokens)
    codes = _find_codes(tokens, lead)
    if len(codes) > 1:
        return Reply(
            "unrecognised", text=text, reason=f"names more than one code: {', '.join(codes)}"
        )
    code = codes[0] if codes else None
    progress = _read_progress(body)

    if lead.word is not None:
        return Reply(
            "ack", code, progress.households, progress.done, text, f"starts with {lead.word}"
        )
    if progress.reported:
        return Reply("progress", code, progress.households, progress.done, text, progress.reason)
    return Reply("unrecognised", code=code, text=text, reason=progress.reason or lead.reason)


def _refusal(text: str, normalised: str, tokens: list[_Token]) -> str:
    """Why a text cannot be an answer at all, before reading its words ("" when it may be one)."""
    if _AUTO_REPLY.search(normalised):
        return "an auto-reply is never an answer"
    if not tokens:
        return "empty" if not text.strip() else "no words, only punctuation or symbols"
    return ""


def normalise_code(text: str) -> str | None:
    """A warning short code as stored ("A7") from how a person wrote it ("ａ７", "a7"), or None."""
    if not isinstance(text, str) or len(text) > 32:
        return None
    candidate = unicodedata.normalize("NFKC", text).strip()
    # Checked before upper-casing: str.upper() turns some non-Latin letters into Latin ones (ı → I).
    if _CODE_ANY_CASE.fullmatch(candidate) is None:
        return None
    return candidate.translate(_ASCII_UPPER)


# --- normalising -------------------------------------------------------------------------------


def _normalise(text: str) -> str:
    cut = text[:MAX_CHARS]
    if len(text) > MAX_CHARS:
        # The cut may split a word ("A71" → "A7", "二十五户" → "二十"): drop the partial last word,
        # unless the text has no separator at all and dropping it would leave nothing.
        last_break = _last_separator(cut)
        if last_break > 0:
            cut = cut[:last_break]
    # NFKC can lengthen a text (one ligature becomes up to 18 characters); only ligature floods
    # reach this bound, and they hold no answer.
    normalised = unicodedata.normalize("NFKC", cut)[: 2 * MAX_CHARS]
    cleaned = "".join(_clean_char(char) for char in normalised)
    return cleaned.translate(_ASCII_UPPER)


def _last_separator(text: str) -> int:
    for index in range(len(text) - 1, -1, -1):
        char = text[index]
        if not (char.isalnum() or char == "_"):
            return index
    return -1


def _clean_char(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cf":
        return ""  # invisible format characters split words without being seen: 收\u200b到
    if category[0] == "C":
        return " "  # controls, surrogates, unassigned and private-use characters
    return char


def _strip_signatures(body: str) -> str:
    # A phone may add more than one block; a few rounds are plenty.
    for _ in range(3):
        stripped = _strip_one_signature(body)
        if stripped == body:
            break
        body = stripped
    return body


def _strip_one_signature(body: str) -> str:
    text = body.strip()
    tail = _BRACKETED_TAIL.search(text)
    if tail is not None and _is_signature(tail.group(1) or tail.group(2) or ""):
        before = text[: tail.start()]
        if _HAS_WORD.search(before):
            return before
    head = _BRACKETED_HEAD.search(text)
    if head is not None and _is_signature(head.group(1) or head.group(2) or ""):
        after = text[head.end() :]
        if _HAS_WORD.search(after):
            return after
    dashed = _DASHED_TAIL.search(text)
    if dashed is not None and _is_signature(dashed.group(1)):
        before = text[: dashed.start()]
        if _HAS_WORD.search(before) and any(char.isalpha() for char in dashed.group(1)):
            return before
    return body


def _is_signature(inner: str) -> bool:
    inner = inner.strip()
    return (
        len(inner) <= _MAX_SIGNATURE
        and _CODE.fullmatch(inner) is None  # 收到【A7】: the block is the code
        and _PROGRESS_HINT.search(inner) is None  # 5户 - 完成: the "name" is the report
        and not _starts_with_answer(inner)  # A7—收到, A7 [1]: the "name" is the answer
    )


def _starts_with_answer(text: str) -> bool:
    tokens = _tokenise(text)
    return bool(tokens) and _find_lead(tokens).word is not None


# --- tokens ------------------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: Literal["han", "word", "sep"]
    text: str


def _tokenise(body: str) -> list[_Token]:
    """The text's runs, without leading and trailing separators (they carry no meaning)."""
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(body):
        han, word, sep = match.group("han", "word", "sep")
        if han is not None:
            tokens.append(_Token("han", han))
        elif word is not None:
            glued = _GLUED.fullmatch(word)
            parts = [part for part in glued.groups() if part] if glued else [word]
            tokens.extend(_Token("word", part) for part in parts)
        elif sep is not None:
            tokens.append(_Token("sep", sep))
    start = 0
    end = len(tokens)
    while start < end and tokens[start].kind == "sep":
        start += 1
    while end > start and tokens[end - 1].kind == "sep":
        end -= 1
    return tokens[start:end]


def _is_code(token: _Token) -> bool:
    return token.kind == "word" and _CODE.fullmatch(token.text) is not None


def _next_content(tokens: list[_Token], index: int) -> int:
    """The index of the first non-separator token after ``index``, or len(tokens)."""
    index += 1
    while index < len(tokens) and tokens[index].kind == "sep":
        index += 1
    return index


# --- the leading word --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lead:
    word: str | None  # the accepted word the text starts with, or None
    index: int  # the token holding it
    clean_end: bool  # nothing but particles follows the word in its token, so a code may follow
    reason: str  # why there is none


class _HanWord(NamedTuple):
    word: str | None
    rest: str
    reason: str


def _han_word(text: str) -> _HanWord:
    """The accepted word a run of Chinese text starts with, and what follows it in the run."""
    for word in HAN_WORDS:
        if text.startswith(word):
            rest = text[len(word) :]
            break
    else:
        return _HanWord(None, text, f"starts with {text[:4]}, not an accepted word")
    if word == "好" and rest and rest[0] not in _PARTICLES:
        return _HanWord(None, rest, f"好{rest[0]} is not 好 on its own")
    if _negates_or_asks(rest):
        return _HanWord(None, rest, f"{word}{rest[:2]} negates or asks")
    return _HanWord(word, rest, "")


def _negates_or_asks(following: str) -> bool:
    return following == "没" or following.startswith(_NEGATION_OR_QUESTION)


def _find_lead(tokens: list[_Token]) -> _Lead:
    index = 0
    if _is_code(tokens[0]):  # A7 收到
        index = _next_content(tokens, 0)
        if index == len(tokens):
            return _Lead(None, -1, clean_end=False, reason="a code alone is not an answer")
    token = tokens[index]
    if token.kind == "han":
        word, rest, reason = _han_word(token.text)
        if word is None:
            return _Lead(None, -1, clean_end=False, reason=reason)
        return _Lead(word, index, clean_end=all(char in _PARTICLES for char in rest), reason="")
    reason = _latin_rejection(tokens, index)
    if reason:
        return _Lead(None, -1, clean_end=False, reason=reason)
    return _Lead(token.text, index, clean_end=True, reason="")


def _latin_rejection(tokens: list[_Token], index: int) -> str:
    """Why the Latin or digit word at ``index`` is not an acknowledgement ("" when it is one)."""
    word = tokens[index].text
    if word not in LATIN_WORDS:
        what = "a code" if _CODE.fullmatch(word) else "not an accepted word"
        return f"{word[:12]} is {what}"
    after = tokens[index + 1] if index + 1 < len(tokens) else None
    if after is None or after.kind == "word":  # the end, or a glued code (1A7, OKA7)
        return ""
    if word == "1":
        return _one_rejection(tokens, index)
    if after.kind == "han" and _negates_or_asks(after.text):
        return f"{word}{after.text[:2]} negates or asks"
    return ""


def _one_rejection(tokens: list[_Token], index: int) -> str:
    """Why a leading "1" is a quantity, not "press 1 to confirm" ("" when it is the answer)."""
    after = tokens[index + 1]
    if after.kind == "han":
        # 1收到 is an answer; 1户, 1个, 1点 count something.
        return "" if _han_word(after.text).word else f"1{after.text[0]} counts something"
    following = tokens[index + 2] if index + 2 < len(tokens) else None
    if following is None:
        return ""
    if after.text in _NUMBER_JOINERS and following.kind == "word" and following.text[0].isdigit():
        return "1 is part of a number"
    if after.text.isspace() and following.kind == "han" and following.text[0] in _UNITS:
        return f"1 {following.text[0]} counts something"
    return ""


# --- codes -------------------------------------------------------------------------------------


def _find_codes(tokens: list[_Token], lead: _Lead) -> list[str]:
    """The distinct codes the text names where a person puts one (see the module docstring)."""
    places = [0]
    if lead.word is not None and lead.clean_end:
        places.append(_next_content(tokens, lead.index))
    last = len(tokens) - 1
    if last > 0 and tokens[last - 1].kind == "sep":
        places.append(last)
    codes: list[str] = []
    for place in places:
        if place >= len(tokens) or not _is_code(tokens[place]):
            continue
        if _code_ends_cleanly(tokens, place) and tokens[place].text not in codes:
            codes.append(tokens[place].text)
    return codes


def _code_ends_cleanly(tokens: list[_Token], index: int) -> bool:
    if index + 1 == len(tokens):
        return True
    after = tokens[index + 1]
    if after.kind != "han":  # a separator, or an accepted word glued on (A7OK)
        return True
    # a7确认 and A7已通知5 are codes; B3栋 is a building.
    return _han_word(after.text).word is not None or _PROGRESS_START.match(after.text) is not None


# --- progress ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Progress:
    reported: bool
    households: int | None
    done: bool
    reason: str


def _read_progress(body: str) -> _Progress:
    counts: dict[tuple[int, int], int] = {}  # (clause, position) → number; one number read once
    done = False
    verb = False
    doubted = False
    parts = _CLAUSE_BREAK.split(body)
    for index in range(0, len(parts), 2):
        clause = parts[index]
        ending = parts[index + 1] if index + 1 < len(parts) else ""
        if "?" in ending or _DOUBT.search(clause):
            doubted = doubted or bool(_PROGRESS_HINT.search(clause) or _DONE.search(clause))
            continue
        for pattern in (_COUNT_BEFORE_UNIT, _COUNT_AFTER_VERB):
            for match in pattern.finditer(clause):
                counts[index, match.start("n")] = _number(match.group("n"))
        done = done or _DONE.search(clause) is not None
        verb = verb or _PROGRESS_VERB.search(clause) is not None

    values = sorted(set(counts.values()))
    households = values[0] if len(values) == 1 else None
    reported = bool(values) or done or verb
    if len(values) > 1:
        reason = f"gives different counts ({', '.join(map(str, values))})"
    elif households is not None:
        reason = f"reports households: {households}" + (", done" if done else "")
    elif done:
        reason = "reports the task done"
    elif verb:
        reason = "reports progress without a count"
    elif doubted:
        reason = "mentions progress but negates, doubts or asks"
    else:
        reason = ""
    return _Progress(reported, households, done, reason)


def _number(text: str) -> int:
    if text[0].isdigit():
        return int(text)
    if "十" in text:
        tens, _, ones = text.partition("十")
        return _DIGIT_HAN.get(tens, 1) * 10 + _DIGIT_HAN.get(ones, 0)
    return _DIGIT_HAN[text]
