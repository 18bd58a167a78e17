"""Importing roster files: good ones land, bad ones are reported in full and change nothing."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import asyncpg
import openpyxl
import pytest

from rosters.headers import recognise
from rosters.importer import import_files
from rosters.problems import Problem, RosterImportError
from tests.roster.digest import roster_digest
from tests.waiting import until
from warnd.db import Conn
from warnd.db.notify import ROSTER_CHANNEL
from warnd.db.pool import connect

FIXTURES = Path(__file__).parent / "roster"
GOOD = sorted((FIXTURES / "good").glob("*.csv"))
BAD = sorted((FIXTURES / "bad").glob("*.csv"))


async def _assert_good_roster(conn: Conn) -> None:
    villages = await conn.fetch(
        "SELECT code, name, parent_code, lat, lon, blind_spot, remote, mountain, geo_hazard "
        "FROM divisions WHERE level = 'village' ORDER BY code"
    )
    assert [(v["code"], v["name"], v["parent_code"]) for v in villages] == [
        ("370831101001", "泉林社区", "370831101000"),
        ("370831101201", "张庄村", "370831101000"),
        ("370831101202", "李家峪村", "370831101000"),
    ]
    assert (villages[1]["lat"], villages[1]["lon"]) == (35.6711, 117.3402)
    assert villages[2]["lat"] is None
    assert [v["blind_spot"] for v in villages] == [False, True, True]
    assert [v["geo_hazard"] for v in villages] == [False, True, True]
    assert villages[2]["remote"] and not villages[1]["remote"]

    responders = {
        r["ref"]: r
        for r in await conn.fetch(
            "SELECT r.*, b.ref AS backup_ref FROM responders r "
            "LEFT JOIN responders b ON b.id = r.backup_id"
        )
    }
    assert set(responders) == {"T-R1", "T-R2", "T-R3", "T-R4", "T-R5"}
    r1, r2, r3, r4, r5 = (responders[f"T-R{i}"] for i in range(1, 6))
    assert r1["division_code"] == "370831101000" and r1["level"] == "town"
    assert r2["level"] == "town" and r2["specialities"] == ["flood", "geological"]
    assert r3["phone"] == "+8613912345680" and r3["specialities"] == ["flood", "forest_fire"]
    assert r4["phone"] == "+8613912345681" and r4["specialities"] == ["all"]
    assert r5["specialities"] == ["geological"] and r5["level"] == "village"
    assert [r["backup_ref"] for r in (r1, r2, r3, r4, r5)] == [
        "T-R2",
        "T-R1",
        "T-R4",
        "T-R3",
        "T-R1",
    ]
    assert [r["exercise"] for r in (r1, r2, r3, r4, r5)] == [False, False, True, True, False]

    households = {r["ref"]: r for r in await conn.fetch("SELECT * FROM households")}
    assert households["T-H1"]["phones"] == ["+865374321234"]
    assert households["T-H2"]["phones"] == ["+8613912340002", "+8613912340003"]
    assert households["T-H3"]["phones"] == ["+8613912340005", "+8613912340006"]
    assert households["T-H2"]["exercise"] and households["T-H1"]["head_name"] == "王秀英"

    special = {
        r["ref"]: r
        for r in await conn.fetch(
            "SELECT s.*, h.ref AS household_ref, r.ref AS helper_ref FROM special_persons s "
            "JOIN responders r ON r.id = s.helper_id "
            "LEFT JOIN households h ON h.id = s.household_id"
        )
    }
    assert special["T-S1"]["category"] == "elderly_alone"
    assert special["T-S1"]["phone"] == "+865374321234"
    assert special["T-S1"]["household_ref"] == "T-H1" and special["T-S1"]["helper_ref"] == "T-R3"
    assert special["T-S2"]["category"] == "child" and special["T-S2"]["phone"] is None
    assert special["T-S3"]["category"] == "disabled" and special["T-S3"]["household_ref"] is None

    facilities = {r["ref"]: r for r in await conn.fetch("SELECT * FROM facilities")}
    assert facilities["T-F1"]["kind"] == "school" and not facilities["T-F1"]["exercise"]
    assert facilities["T-F2"]["kind"] == "elderly_care" and facilities["T-F2"]["exercise"]
    assert facilities["T-F2"]["contact_phone"] == "+8613912349998"


async def test_good_csv_files_are_imported(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        summary = await import_files(conn, list(reversed(GOOD)))  # order does not matter
        await _assert_good_roster(conn)
        assert summary.counts() == {
            "divisions": 3,
            "responders": 5,
            "households": 3,
            "special_persons": 3,
            "facilities": 2,
        }
        assert summary.types["responders"].inserted == 5
        # importing again updates in place: same refs, same rows
        before = await roster_digest(conn)
        again = await import_files(conn, GOOD)
        assert again.types["households"].unchanged == 3
        assert again.types["households"].inserted == again.types["households"].updated == 0
        assert await roster_digest(conn) == before


def _to_xlsx(folder: Path, target: Path) -> None:
    """One workbook, one sheet per fixture file, with the habits of real spreadsheets."""
    book = openpyxl.Workbook()
    notes = book.active
    assert notes is not None
    notes.title = "说明"
    notes.append(["本工作簿由测试生成"])
    for path in sorted(folder.glob("*.csv")):
        encoding = "gb18030" if path.name == "households.csv" else "utf-8-sig"
        with path.open(encoding=encoding, newline="") as f:
            rows = list(csv.reader(f))
        sheet = book.create_sheet(path.stem)
        if path.stem == "responders":
            sheet.append(["济宁市泗水县泉林镇防汛责任人名单"])  # a title row above the header
        for row in rows:
            # codes and mobile numbers typed into number cells, as Excel users do
            sheet.append([int(c) if c.isdigit() and len(c) >= 9 else c for c in row])
    book.save(target)


async def test_good_xlsx_workbook_is_imported(pool: asyncpg.Pool, tmp_path: Path) -> None:
    workbook = tmp_path / "泉林镇名册.xlsx"
    _to_xlsx(FIXTURES / "good", workbook)
    async with pool.acquire() as conn:
        summary = await import_files(conn, [workbook])
        assert summary.types["responders"].rows == 5
        assert summary.types["households"].files == 1
        await _assert_good_roster(conn)


async def test_every_problem_is_reported_and_nothing_changes(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await import_files(conn, GOOD)
        before = await roster_digest(conn)
        with pytest.raises(RosterImportError) as caught:
            await import_files(conn, [*GOOD, *BAD])
        assert await roster_digest(conn) == before
    problems = caught.value.problems
    found = {(p.file, p.row, p.column) for p in problems}
    assert found == {
        ("bad/responders.csv", 2, "电话"),
        ("bad/responders.csv", 2, "B角"),
        ("bad/responders.csv", 3, "行政区划代码"),
        ("bad/responders.csv", 4, "姓名"),
        ("bad/responders.csv", 4, "级别"),
        ("bad/responders.csv", 5, "编号"),
        ("bad/responders.csv", 5, "专业"),
        ("bad/responders.csv", 6, "电话"),
        ("bad/responders.csv", 6, "B角"),
        ("bad/households.csv", 2, "村代码"),
        ("bad/households.csv", 3, "村代码"),
        ("bad/households.csv", 3, "演练"),
        ("bad/households.csv", 4, "地址"),
        ("bad/households.csv", 4, "电话"),
        ("bad/households.csv", 5, "电话"),
        ("bad/special_persons.csv", 2, "类别"),
        ("bad/special_persons.csv", 2, "户编号"),
        ("bad/special_persons.csv", 2, "包保联系人编号"),
    }, "\n".join(map(str, problems))
    text = {str(p) for p in problems}
    assert (
        "bad/responders.csv row 2, column 电话: '1391234' is not a valid mobile number "
        "(a mobile number has 11 digits, this has 7)"
    ) in text
    assert "bad/responders.csv row 5, column 编号: 'B-R1' is already used on row 2" in text
    assert any("row 6, column 电话: '0537-2345678' is a fixed-line number" in t for t in text)
    assert any("row 4, column 级别: 370831101201 is a village, not a county" in t for t in text)
    assert any("'B-R404' is not the 编号 of any responder" in t for t in text)
    assert any("火山" in t and "防汛" in t for t in text)
    assert str(caught.value).startswith("18 problem(s) in the roster files; nothing was imported")


async def test_unrecognised_files_and_columns(pool: asyncpg.Pool, tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("姓名,年龄\n张三,30\n", encoding="utf-8")
    extra = tmp_path / "extra.csv"
    extra.write_text(
        "编号,姓名,电话,行政区划代码,爱好\nX-1,张三,13912345678,370831,钓鱼\n", encoding="utf-8"
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0")
    async with pool.acquire() as conn:
        with pytest.raises(RosterImportError) as caught:
            await import_files(conn, [odd, extra, empty, old, tmp_path / "missing.csv"])
        assert await conn.fetchval("SELECT count(*) FROM responders") == 0
    problems = {p.file: p for p in caught.value.problems}
    assert "not recognised as any roster type" in problems["odd.csv"].reason
    assert problems["extra.csv"] == Problem(
        "extra.csv", 1, "爱好", "unknown column for 责任人 (responders)"
    )
    assert "empty" in problems["empty.csv"].reason
    assert ".xlsx" in problems["old.xls"].reason
    assert problems["missing.csv"].reason == "file not found"


def test_header_recognition() -> None:
    layout = recognise(["*编号", "姓名（必填）", "手机号", "所属区划代码", "Ｂ角"], 1)
    assert not isinstance(layout, str)
    assert layout.record_type.key == "responders"
    assert layout.headers["backup_ref"] == "Ｂ角"
    english = recognise(["ref", "village_code", "address", "phones", "exercise"], 1)
    assert not isinstance(english, str) and english.record_type.key == "households"
    special = recognise(["编号", "姓名", "类别", "村代码", "地址", "电话", "包保联系人"], 1)
    assert not isinstance(special, str) and special.record_type.key == "special_persons"
    facility = recognise(["编号", "名称", "类型", "村代码", "联系人", "联系电话"], 1)
    assert not isinstance(facility, str) and facility.record_type.key == "facilities"
    division = recognise(["行政区划代码", "名称", "山区"], 1)
    assert not isinstance(division, str) and division.record_type.key == "divisions"


async def test_references_across_files_and_database(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A later import may name responders and households that are already in the database."""
    for name in ("villages.csv", "responders.csv", "households.csv"):
        shutil.copy(FIXTURES / "good" / name, tmp_path / name)
    later = tmp_path / "later.csv"
    later.write_text(
        "编号,姓名,类别,村代码,户编号,包保联系人编号\nT-S9,王奶奶,空巢老人,370831101201,T-H2,T-R4\n",
        encoding="utf-8",
    )
    update = tmp_path / "update.csv"
    # no 演练 and no B角 column: those stay as they are; an empty 职务 clears the role
    update.write_text("编号,姓名,电话,行政区划代码,职务\nT-R3,王强强,13912345699,370831101201,\n")
    async with pool.acquire() as conn:
        await import_files(
            conn, [tmp_path / n for n in ("villages.csv", "responders.csv", "households.csv")]
        )
        summary = await import_files(conn, [later, update])
        assert summary.types["special_persons"].inserted == 1
        assert summary.types["responders"].updated == 1
        row = await conn.fetchrow(
            "SELECT r.name, r.phone, r.role, r.exercise, b.ref AS backup FROM responders r "
            "JOIN responders b ON b.id = r.backup_id WHERE r.ref = 'T-R3'"
        )
        assert row is not None
        assert dict(row) == {
            "name": "王强强",
            "phone": "+8613912345699",
            "role": "",
            "exercise": True,
            "backup": "T-R4",
        }


async def test_an_import_tells_every_process_so_that_rosters_in_memory_reload(
    pool: asyncpg.Pool, db_url: str
) -> None:
    """The earthquake fast path holds the roster in memory: an import NOTIFYs at its commit
    (and a refused import, which changes nothing, does not)."""
    heard: list[str] = []
    listener = await connect(db_url)
    try:
        await listener.add_listener(ROSTER_CHANNEL, lambda *args: heard.append(args[2]))
        async with pool.acquire() as conn:
            with pytest.raises(RosterImportError):
                await import_files(conn, BAD)
            await import_files(conn, GOOD)
        await until(lambda: heard == [ROSTER_CHANNEL], what="the roster NOTIFY")
    finally:
        await listener.close()
