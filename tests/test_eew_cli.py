"""``warnd eew simulate``: a drill's preview on the command line, as tables or JSON; nothing is
sent or recorded. (The numbers are those of tests/test_eew_api.py, on the same roster.)"""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner, Result

from tests.fixtures import COUNTY, VILLAGE_1, Api
from warnd.cli.main import main

EPICENTRE = ["--lat", "35.40", "--lon", "116.60", "--depth", "10"]


async def run(args: list[str]) -> Result:
    """The CLI in a thread (it runs its own event loop), wide enough for the tables."""
    env = {"COLUMNS": "240"}
    return await asyncio.to_thread(CliRunner().invoke, main, args, env=env, catch_exceptions=False)


async def test_simulate_prints_levels_countdowns_and_counties(app: Api, db_url: str) -> None:
    result = await run(["eew", "simulate", *EPICENTRE, "--mag", "5.5", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "不发送" in out
    assert "橙色 orange 2" in out and "黄色 yellow 1" in out and "共 3" in out
    assert "盲区 blind zone: 0" in out
    rencheng = next(line for line in out.splitlines() if "任城区" in line)
    # villages 2, red 0, orange 2, yellow 0, blind 0, households 3, responders 5, people 8,
    # speaker villages 1, speakers 0 (0 offline)
    cells = [cell.strip() for cell in rencheng.split("│")[1:-1]]
    assert cells == ["任城区 370811", "2", "0", "2", "0", "0", "3", "5", "8", "1", "0 (0)"]
    assert "张庄村" in out and VILLAGE_1 in out
    assert "短信 SMS: 【济宁市应急管理局】地震预警：震中发生5.5级地震" in out
    assert await app.count("eew_reports") == 0


async def test_simulate_as_json(app: Api, db_url: str) -> None:
    options = ["--mag", "5.5", "--elapsed", "5", "--json", "--database-url", db_url]
    result = await run(["eew", "simulate", *EPICENTRE, *options])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["summary"]["blind_zone"] == 2
    assert body["counties"][0]["county_code"] == COUNTY


async def test_simulate_below_the_threshold(app: Api, db_url: str) -> None:
    result = await run(["eew", "simulate", *EPICENTRE, "--mag", "3.9", "--database-url", db_url])
    assert result.exit_code == 0
    assert "不发布预警" in result.output


async def test_simulate_refuses_a_bad_option(app: Api, db_url: str) -> None:
    result = await run(["eew", "simulate", *EPICENTRE, "--mag", "12", "--database-url", db_url])
    assert result.exit_code == 2 and "--mag" in result.output
