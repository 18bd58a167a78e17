"""Reading SMS replies: acknowledgements, codes, task progress, false positives, robustness."""

from __future__ import annotations

import random
import time
import unicodedata

import pytest

from warnd.core.replies import (
    HAN_WORDS,
    LATIN_WORDS,
    MAX_CHARS,
    Reply,
    normalise_code,
    parse_reply,
)

# (text, kind, code, households, done)
Case = tuple[str, str, str | None, int | None, bool]

ACK = "ack"
PROGRESS = "progress"
NONE = "unrecognised"


def fullwidth(text: str) -> str:
    """The text as a Chinese input method in full-width mode types it: １, ＯＫ, Ａ７, ，."""
    out = []
    for char in text:
        if char == " ":
            out.append("\u3000")
        elif "!" <= char <= "~":
            out.append(chr(ord(char) + 0xFEE0))
        else:
            out.append(char)
    return "".join(out)


def reading(reply: Reply) -> tuple[str, str | None, int | None, bool]:
    return (reply.kind, reply.code, reply.households, reply.done)


ACKNOWLEDGEMENTS: list[Case] = [
    ("1", ACK, None, None, False),
    ("收到", ACK, None, None, False),
    ("确认", ACK, None, None, False),
    ("已收到", ACK, None, None, False),
    ("好", ACK, None, None, False),
    ("OK", ACK, None, None, False),
    ("Y", ACK, None, None, False),
    ("YES", ACK, None, None, False),
    ("ok", ACK, None, None, False),
    ("Ok", ACK, None, None, False),
    ("y", ACK, None, None, False),
    ("yes", ACK, None, None, False),
    ("Yes!", ACK, None, None, False),
    ("OKAY", ACK, None, None, False),
    ("okay.", ACK, None, None, False),
    ("已经收到", ACK, None, None, False),
    ("已确认", ACK, None, None, False),
    ("確認", ACK, None, None, False),
    ("  收到  ", ACK, None, None, False),
    ("收到。", ACK, None, None, False),
    ("收到！！！", ACK, None, None, False),
    ("，收到", ACK, None, None, False),
    ("(1)", ACK, None, None, False),
    ("「确认」", ACK, None, None, False),
    ("1?", ACK, None, None, False),
    ("1.", ACK, None, None, False),
    ("1 1", ACK, None, None, False),
    ("收到，马上转移群众", ACK, None, None, False),
    ("收到马上转移群众", ACK, None, None, False),
    ("收到收到", ACK, None, None, False),
    ("确认收到", ACK, None, None, False),
    ("确认没问题", ACK, None, None, False),
    ("收到，不过雨太大", ACK, None, None, False),
    ("好的", ACK, None, None, False),
    ("好的我不去", ACK, None, None, False),  # documented: 好的 is "received"
    ("好嘞", ACK, None, None, False),
    ("好吧", ACK, None, None, False),
    ("好好好", ACK, None, None, False),
    ("OK了", ACK, None, None, False),
    ("ok收到", ACK, None, None, False),
    ("1收到", ACK, None, None, False),
    ("1，马上到", ACK, None, None, False),
    ("Yes, on my way", ACK, None, None, False),
    ("收到 谢谢", ACK, None, None, False),
]

CODES: list[Case] = [
    ("1 A7", ACK, "A7", None, False),
    ("1A7", ACK, "A7", None, False),
    ("1,A7", ACK, "A7", None, False),
    ("收到A7", ACK, "A7", None, False),
    ("收到 a7", ACK, "A7", None, False),
    ("收到，A7", ACK, "A7", None, False),
    ("A7 收到", ACK, "A7", None, False),
    ("A7收到", ACK, "A7", None, False),
    ("a7确认", ACK, "A7", None, False),
    ("A7，1", ACK, "A7", None, False),
    ("A7 1", ACK, "A7", None, False),
    ("B12 OK", ACK, "B12", None, False),
    ("OKA7", ACK, "A7", None, False),
    ("okb12", ACK, "B12", None, False),
    ("A7OK", ACK, "A7", None, False),
    ("YES B123", ACK, "B123", None, False),
    ("y a7", ACK, "A7", None, False),
    ("YA7", ACK, "A7", None, False),
    ("好的，A7", ACK, "A7", None, False),
    ("收到了A7", ACK, "A7", None, False),
    ("收到，马上转移群众 A7", ACK, "A7", None, False),  # a code as the last word counts
    ("A7 收到 A7", ACK, "A7", None, False),  # the same code twice is one code
    ("１ Ａ７", ACK, "A7", None, False),
    ("Ａ７　确认", ACK, "A7", None, False),
    ("收到【A7】", ACK, "A7", None, False),  # a bracket holding only a code is the code
    ("【A7】收到", ACK, "A7", None, False),
    ("A7 [1]", ACK, "A7", None, False),
    ("A7-收到", ACK, "A7", None, False),
    # A code alone, or where a person would not put one, is not a code or not an answer.
    ("A7", NONE, "A7", None, False),
    ("a7", NONE, "A7", None, False),
    ("A71", NONE, "A71", None, False),  # never A7 + 1: write "A7 1"
    ("A7—张三", NONE, "A7", None, False),
    ("收到，B3栋的人已转移", ACK, None, None, False),  # B3栋 is a building
    ("收到A7马上转移", ACK, None, None, False),  # glued to other text: not taken as a code
    ("收到 A1234", ACK, None, None, False),  # four digits: not a code
    ("收到，COVID19", ACK, None, None, False),  # digits inside a word
    ("收到 A7B", ACK, None, None, False),
    # Two different codes: acknowledging either or all would be a guess.
    ("1 A7 B12", NONE, None, None, False),
    ("A7 收到 B12", NONE, None, None, False),
]

FALSE_POSITIVES: list[Case] = [
    ("10", NONE, None, None, False),
    ("11", NONE, None, None, False),
    ("111", NONE, None, None, False),
    ("0", NONE, None, None, False),
    ("2", NONE, None, None, False),
    ("1.5", NONE, None, None, False),
    ("1:30到", NONE, None, None, False),
    ("1/2", NONE, None, None, False),
    ("1个", NONE, None, None, False),
    ("1点到", NONE, None, None, False),
    ("1 个人", NONE, None, None, False),
    ("1马上到", NONE, None, None, False),  # 1 followed by text counts or says something else
    ("Yesterday", NONE, None, None, False),
    ("yeah", NONE, None, None, False),
    ("OK1", NONE, None, None, False),
    ("okey", NONE, None, None, False),
    ("YES2", NONE, None, None, False),
    ("No", NONE, None, None, False),
    ("N", NONE, None, None, False),
    ("不好", NONE, None, None, False),
    ("好像不对", NONE, None, None, False),
    ("好多水", NONE, None, None, False),
    ("很好", NONE, None, None, False),
    ("好不好", NONE, None, None, False),
    ("好吗", NONE, None, None, False),
    ("好了吗", NONE, None, None, False),
    ("确认不了", NONE, None, None, False),
    ("收到吗", NONE, None, None, False),
    ("收到吗？", NONE, None, None, False),
    ("收到没", NONE, None, None, False),
    ("收到没有", NONE, None, None, False),
    ("收到不用回复", NONE, None, None, False),
    ("OK不了", NONE, None, None, False),
    ("没收到", NONE, None, None, False),
    ("未收到", NONE, None, None, False),
    ("请问是哪里下雨", NONE, None, None, False),
    ("我在开会，稍后回电", NONE, None, None, False),
    ("我不是这个村的，打错了", NONE, None, None, False),
    ("自动回复：收到您的短信，我会尽快回复", NONE, None, None, False),
    ("[自动回复] 收到", NONE, None, None, False),
    ("Auto-reply: OK", NONE, None, None, False),
]

PROGRESS_CASES: list[Case] = [
    ("已通知 5", PROGRESS, None, 5, False),
    ("已通知5", PROGRESS, None, 5, False),
    ("已通知5户", PROGRESS, None, 5, False),
    ("已通知：5户", PROGRESS, None, 5, False),
    ("通知了5户", PROGRESS, None, 5, False),
    ("通知了5", PROGRESS, None, 5, False),
    ("已经通知12户", PROGRESS, None, 12, False),
    ("5户", PROGRESS, None, 5, False),
    ("5 户", PROGRESS, None, 5, False),
    ("5家", PROGRESS, None, 5, False),
    ("12户", PROGRESS, None, 12, False),
    ("1户", PROGRESS, None, 1, False),  # 1 with 户 is a count, not "press 1"
    ("1 户", PROGRESS, None, 1, False),
    ("０户", PROGRESS, None, 0, False),
    ("１２户", PROGRESS, None, 12, False),
    ("已完成5户", PROGRESS, None, 5, False),  # a count, not "all done"
    ("完成了5户", PROGRESS, None, 5, False),
    ("五户", PROGRESS, None, 5, False),
    ("两户", PROGRESS, None, 2, False),
    ("十户", PROGRESS, None, 10, False),
    ("十二户", PROGRESS, None, 12, False),
    ("二十户", PROGRESS, None, 20, False),
    ("二十五户", PROGRESS, None, 25, False),
    ("九十九户", PROGRESS, None, 99, False),
    ("已通知五户", PROGRESS, None, 5, False),
    ("已通知 两", PROGRESS, None, 2, False),
    ("完成", PROGRESS, None, None, True),
    ("已完成", PROGRESS, None, None, True),
    ("全部完成", PROGRESS, None, None, True),
    ("全部通知", PROGRESS, None, None, True),
    ("全部通知到了", PROGRESS, None, None, True),
    ("都通知了", PROGRESS, None, None, True),
    ("都已通知", PROGRESS, None, None, True),
    ("已全部通知", PROGRESS, None, None, True),
    ("通知完毕", PROGRESS, None, None, True),
    ("已鸣锣", PROGRESS, None, None, True),
    ("一家人都通知了", PROGRESS, None, None, True),  # 一家人 is a family, not one household
    ("全部完成，共7户", PROGRESS, None, 7, True),
    ("已通知7户，全部完成", PROGRESS, None, 7, True),
    ("已通知", PROGRESS, None, None, False),  # a report without a count
    ("已通知村民", PROGRESS, None, None, False),
    ("A7 已通知 5", PROGRESS, "A7", 5, False),
    ("A7已通知5户", PROGRESS, "A7", 5, False),
    ("已通知5户 A7", PROGRESS, "A7", 5, False),
    ("A7 5户", PROGRESS, "A7", 5, False),
    ("A7 完成", PROGRESS, "A7", None, True),
    ("已通知5户，还有3户没通知", PROGRESS, None, 5, False),
    ("已通知5户。2户不在家", PROGRESS, None, 5, False),
    ("5户\n完成", PROGRESS, None, 5, True),
    # Two different counts: which one is the progress is a guess.
    ("已通知5户，共7户", PROGRESS, None, None, False),
    ("5户，已通知5户", PROGRESS, None, 5, False),  # the same count twice is one count
    # Negated, doubted, asked, to be done, or vague: no progress.
    ("还有3户没通知", NONE, None, None, False),
    ("剩2户", NONE, None, None, False),
    ("差1户", NONE, None, None, False),
    ("没完成", NONE, None, None, False),
    ("未完成", NONE, None, None, False),
    ("还没全部通知", NONE, None, None, False),
    ("完成不了", NONE, None, None, False),
    ("差不多完成", NONE, None, None, False),
    ("完成了吗", NONE, None, None, False),
    ("完成?", NONE, None, None, False),
    ("已通知5户？", NONE, None, None, False),
    ("准备通知5户", NONE, None, None, False),
    ("正在通知", NONE, None, None, False),
    ("十几户", NONE, None, None, False),
    ("5-6户", NONE, None, None, False),
    ("5~6户", NONE, None, None, False),
    ("5/7户", NONE, None, None, False),
    ("第3户", NONE, None, None, False),
    ("1.5户", NONE, None, None, False),
    ("已通知 12345", PROGRESS, None, None, False),  # too big to be a count
    ("已通知5人", PROGRESS, None, None, False),  # persons are not households
    ("通知了一遍", PROGRESS, None, None, False),  # notified, but no count
    ("5", NONE, None, None, False),  # a bare number is no report
    # An acknowledgement that also reports progress carries both.
    ("收到，已通知5户", ACK, None, 5, False),
    ("收到 A7，已通知5户", ACK, "A7", 5, False),
    ("好，已完成", ACK, None, None, True),
    ("收到，还没完成", ACK, None, None, False),
    ("收到，全部人员马上转移", ACK, None, None, False),  # a plan, not a finished task
]

SIGNATURES: list[Case] = [
    ("收到【济宁市应急管理局】", ACK, None, None, False),
    ("收到[张三]", ACK, None, None, False),
    ("收到 [Zhang San 13800000000]", ACK, None, None, False),
    ("【任城区李营街道】收到", ACK, None, None, False),
    ("收到—张三", ACK, None, None, False),
    ("收到 —— 张三", ACK, None, None, False),
    ("收到 -- 张三", ACK, None, None, False),
    ("收到 - Zhang San", ACK, None, None, False),
    ("收到 A7 —张三", ACK, "A7", None, False),
    ("1 A7【B12组张三】", ACK, "A7", None, False),  # a code-like word in a signature is ignored
    ("收到【张三】【村委会】", ACK, None, None, False),
    ("已通知5户【张三】", PROGRESS, None, 5, False),
    ("已通知5户 -- 张三", PROGRESS, None, 5, False),
    ("5户 - 完成", PROGRESS, None, 5, True),  # the "name" is the report
    ("【收到】", ACK, None, None, False),  # nothing else: the block is the message
    ("收到［张三］", ACK, None, None, False),
]

ROBUSTNESS: list[Case] = [
    ("", NONE, None, None, False),
    ("   ", NONE, None, None, False),
    ("\n\t", NONE, None, None, False),
    ("。。。", NONE, None, None, False),
    ("👍", NONE, None, None, False),  # a thumbs-up is not one of the accepted words
    ("收到👍", ACK, None, None, False),
    ("👍收到", ACK, None, None, False),
    ("🙏🙏 收到 A7 🙏", ACK, "A7", None, False),
    ("OK👌", ACK, None, None, False),
    ("\x00收到\x07", ACK, None, None, False),
    ("收\u200b到", ACK, None, None, False),  # a zero-width space inside the word
    ("\ufeff1", ACK, None, None, False),  # a byte-order mark in front
    ("1\r\n", ACK, None, None, False),
    ("\u202e收到", ACK, None, None, False),  # a direction override
    ("\ud800收到", ACK, None, None, False),  # a lone surrogate from a broken decoder
    ("收到" + "啊" * 5000, ACK, None, None, False),
    ("收到，" + "雨很大。" * 1000, ACK, None, None, False),
    ("请问" * 3000 + "收到", NONE, None, None, False),  # the answer is not read past the limit
    ("A" * 5000, NONE, None, None, False),
    ("【" * 5000, NONE, None, None, False),
    ("\ufdfa" * 600, NONE, None, None, False),  # one character that NFKC makes 18
]

ALL_CASES = ACKNOWLEDGEMENTS + CODES + FALSE_POSITIVES + PROGRESS_CASES + SIGNATURES + ROBUSTNESS


@pytest.mark.parametrize(
    ("text", "kind", "code", "households", "done"),
    ALL_CASES,
    ids=[ascii(case[0])[:40] for case in ALL_CASES],
)
def test_reply_is_read_as_expected(
    text: str, kind: str, code: str | None, households: int | None, done: bool
) -> None:
    reply = parse_reply(text)
    assert reading(reply) == (kind, code, households, done), reply.reason
    assert reply.text == text  # the original, unchanged, for the duty officer
    assert reply.reason


def test_the_table_is_wide() -> None:
    assert len(ALL_CASES) >= 60
    assert len({case[0] for case in ALL_CASES}) == len(ALL_CASES), "duplicate case"


ACCEPTED = sorted(LATIN_WORDS) + list(HAN_WORDS)


@pytest.mark.parametrize("word", ACCEPTED)
@pytest.mark.parametrize("width", ["half", "full"])
@pytest.mark.parametrize(
    ("template", "code"),
    [
        ("{w}", None),
        ("{w} A7", "A7"),
        ("{w}，B12", "B12"),
        ("C3 {w}", "C3"),
        ("D45，{w}", "D45"),
        ("{w}！", None),
        ("  {w}【张三】", None),
    ],
)
def test_every_accepted_word_in_every_width_and_position(
    word: str, width: str, template: str, code: str | None
) -> None:
    text = template.format(w=word)
    if width == "full":
        text = fullwidth(text)
    for variant in {text, text.lower()}:
        reply = parse_reply(variant)
        assert (reply.kind, reply.code) == ("ack", code), (variant, reply.reason)


@pytest.mark.parametrize("word", sorted(LATIN_WORDS - {"1"}))
def test_latin_words_do_not_run_on_into_letters_or_digits(word: str) -> None:
    for text in (word + "X", word + "9", word + "é", word + "ZZ A7"):
        assert parse_reply(text).kind == "unrecognised", text


def test_a_text_cut_at_the_limit_does_not_invent_a_code_from_a_split_word() -> None:
    # "A71" cut after "A7" would name another warning.
    text = "收到 " + "x" * (MAX_CHARS - 6) + " A71"
    assert len(text) > MAX_CHARS
    assert parse_reply(text).code is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A7", "A7"),
        ("a7", "A7"),
        ("ａ７", "A7"),
        ("Ａ７", "A7"),
        (" b12 ", "B12"),
        ("Z999", "Z999"),
        ("A0", "A0"),
        ("A", None),
        ("7", None),
        ("A1234", None),
        ("AA7", None),
        ("7A", None),
        ("A 7", None),
        ("A7!", None),
        ("收到A7", None),
        ("", None),
        ("ı7", None),  # dotless i upper-cases to I, but is not a Latin letter
        ("A٧", None),  # an Arabic-Indic digit is not a code digit
        ("A7" * 100, None),
    ],
)
def test_normalise_code(text: str, expected: str | None) -> None:
    assert normalise_code(text) == expected


def test_codes_read_from_replies_are_normalised_codes() -> None:
    for text in ("1 ａ７", "收到b12", "C3确认"):
        code = parse_reply(text).code
        assert code is not None
        assert normalise_code(code) == code


def test_not_text_is_unrecognised_not_an_error() -> None:
    assert parse_reply(None).kind == "unrecognised"  # type: ignore[arg-type]
    assert parse_reply(b"1").kind == "unrecognised"  # type: ignore[arg-type]
    assert normalise_code(None) is None  # type: ignore[arg-type]


# Pieces of real replies, so random texts also come close to the grammar.
FRAGMENTS = [
    *("收到", "1", "OK", "A7", "户", "已通知", "完成", "【", "】", "—", "十", "不", "吗", "好"),
    *("的", "Y", "ES", "２", "，", "？", " ", "\u200b", "B12", "五", "-", "."),
]


def random_text(rng: random.Random) -> str:
    """Any code point, weighted towards the characters replies are made of."""
    pools = [
        lambda: chr(rng.randrange(0x110000)),
        lambda: chr(rng.randrange(0x20, 0x7F)),
        lambda: chr(rng.randrange(0xFF01, 0xFF5F)),
        lambda: chr(rng.randrange(0x4E00, 0x9FFF)),
        lambda: chr(rng.randrange(0x1F300, 0x1FAFF)),
        lambda: chr(rng.randrange(0x00, 0x20)),
        lambda: rng.choice(FRAGMENTS),
    ]
    length = rng.choice([0, 1, 2, 3, 5, 8, 13, 40, 200, 700])
    return "".join(rng.choice(pools)() for _ in range(length))


def test_never_raises_on_random_unicode() -> None:
    rng = random.Random(370800)
    for _ in range(4000):
        text = random_text(rng)
        reply = parse_reply(text)
        assert reply.kind in ("ack", "progress", "unrecognised")
        assert reply.text == text
        assert reply.code is None or normalise_code(reply.code) == reply.code
        assert reply.households is None or 0 <= reply.households <= 9999
        normalise_code(text)


def test_random_surrounding_signatures_and_emoji_never_change_a_plain_answer() -> None:
    rng = random.Random(8)
    decorations = ["", " ", "。", "！", "👍", "🙏", "【济宁市应急管理局】", "—张三", " -- 李四"]
    for _ in range(500):
        word = rng.choice(ACCEPTED)
        text = rng.choice(["", " ", "，", "🙂"]) + word + rng.choice(decorations)
        if rng.random() < 0.5:
            text = fullwidth(text)
        assert parse_reply(text).kind == "ack", text


def test_long_and_hostile_texts_are_read_quickly() -> None:
    hostile = [
        "【" * 10_000,
        "-" * 10_000 + "张三",
        "1." * 10_000,
        "5户," * 10_000,
        "\ufdfa" * 10_000,
        "A7 " * 10_000,
        "".join(chr(c) for c in range(0x4E00, 0x4E00 + 10_000)),
    ]
    started = time.perf_counter()
    for text in hostile:
        parse_reply(text)
    assert time.perf_counter() - started < 1.0


def test_fullwidth_helper_matches_nfkc() -> None:
    sample = "1 OK Yes A7 ,!?:;()[]"
    assert unicodedata.normalize("NFKC", fullwidth(sample)).replace("\u3000", " ") == sample
