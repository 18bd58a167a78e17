"""The ``eew`` command group: earthquake early-warning drills (``warnd eew simulate …``).

A simulation sends nothing and records nothing: it reads the roster and the policy and shows who
an earthquake would warn, at which level, how many seconds before the shaking, county by county.
"""

from __future__ import annotations

import asyncio

import click
from rich.console import Console
from rich.table import Table

from warnd.app.views import EewPreview
from warnd.cli.errors import friendly_errors

console = Console()

LEVEL_NAMES = {"red": "红色 red", "orange": "橙色 orange", "yellow": "黄色 yellow"}
LEVEL_STYLES = {"red": "bold red", "orange": "bold dark_orange", "yellow": "bold yellow"}


@click.group(name="eew")
def eew() -> None:
    """地震预警演练 (earthquake early warning: drills)."""


@eew.command("simulate")
@click.option("--lat", type=click.FloatRange(-90, 90), required=True, help="epicentre latitude")
@click.option("--lon", type=click.FloatRange(-180, 180), required=True, help="epicentre longitude")
@click.option("--depth", type=click.FloatRange(0, 700), required=True, help="focal depth, km")
@click.option("--mag", type=click.FloatRange(0, 10), required=True, help="magnitude")
@click.option(
    "--elapsed",
    type=click.FloatRange(0, 600),
    default=0.0,
    show_default=True,
    help="seconds after origin the countdowns are taken at (a first report comes ~5 s after)",
)
@click.option("--exercise", is_flag=True, help="count only people marked for exercises (演练)")
@click.option("--place", default="震中", show_default=True, help="the place the sample texts name")
@click.option(
    "--villages",
    "shown",
    type=click.IntRange(0, 10_000),
    default=15,
    show_default=True,
    help="how many of the alerted villages to list, highest intensity first",
)
@click.option(
    "--database-url",
    default=None,
    help="PostgreSQL URL  [default: WARND_DATABASE_URL, else the embedded server]",
)
@click.option("--json", "as_json", is_flag=True, help="print the preview as JSON")
@friendly_errors
def simulate(  # noqa: PLR0917 - one parameter per command-line option, as click passes them
    lat: float,
    lon: float,
    depth: float,
    mag: float,
    elapsed: float,
    exercise: bool,
    place: str,
    shown: int,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Show who an earthquake here would warn — nothing is sent (地震预警模拟，不发送)."""
    from warnd.app.eew import preview
    from warnd.core.clock import SystemClock
    from warnd.db.pool import open_pool
    from warnd.policy.loader import load_policy
    from warnd.runtime.settings import Settings
    from warnd.runtime.settings import database_url as configured_url

    settings = Settings()
    policy = load_policy(settings.policy)
    url = database_url or configured_url(settings)

    async def work() -> EewPreview:
        async with open_pool(url, min_size=1, max_size=2) as pool:
            return await preview(
                pool,
                policy.earthquake_early_warning.parameters,
                lat=lat,
                lon=lon,
                depth_km=depth,
                magnitude=mag,
                elapsed_s=elapsed,
                exercise=exercise,
                place=place,
                now=SystemClock().now(),
                signature=policy.signature,
            )

    result = asyncio.run(work())
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    show(result, shown)


def show(result: EewPreview, shown: int) -> None:
    """The preview as rich tables: the summary, counties, the first villages, sample texts."""
    s = result.summary
    title = (
        f"地震预警模拟 M{result.magnitude:.1f} 震中 {result.lat:.2f}, {result.lon:.2f} "
        f"深度 {result.depth_km:g} km（发震后 {result.elapsed_s:g} 秒）— 不发送 (nothing is sent)"
    )
    console.print(f"[bold]{title}[/]")
    if not s.public_alert:
        console.print(
            f"低于公众预警震级 M{result.min_magnitude:.1f}：不发布预警 "
            f"(below min_magnitude {result.min_magnitude:g}: nobody is alerted)"
        )
        return
    counts = s.villages.model_dump()
    parts = [f"[{LEVEL_STYLES[k]}]{LEVEL_NAMES[k]} {counts[k]}[/]" for k in LEVEL_NAMES]
    console.print("预警村（社区）villages: " + " · ".join(parts) + f" · 共 {s.alerted_villages}")
    if s.countdown is not None:
        console.print(
            f"倒计时 countdown: {s.countdown.min_s:.1f} … {s.countdown.max_s:.1f} s · "
            f"盲区 blind zone: {s.blind_zone} 村"
        )
    if result.villages_without_coordinates:
        console.print(
            f"[yellow]{result.villages_without_coordinates} 个村无经纬度，不会收到预警 "
            "(villages without coordinates are never alerted)[/]"
        )

    table = Table(title="各县区 per county")
    for header in (
        "县区 county",
        "村 villages",
        "红 red",
        "橙 orange",
        "黄 yellow",
        "盲区 blind",
        "住户 households",
        "责任人 responders",
        "人 people",
        "大喇叭村 speaker villages",
        "大喇叭 speakers (offline)",
    ):
        table.add_column(header, justify="left" if header.startswith("县区") else "right")
    for c in result.counties:
        table.add_row(
            f"{c.county_name} {c.county_code[:6]}",
            f"{c.villages:,}",
            f"{c.red:,}",
            f"{c.orange:,}",
            f"{c.yellow:,}",
            f"{c.blind_zone:,}",
            f"{c.households:,}",
            f"{c.responders:,}",
            f"{c.people:,}",
            f"{c.speaker_villages:,}",
            f"{c.speakers:,} ({c.speakers_offline:,})",
        )
    console.print(table)

    if shown and result.alerted:
        villages = Table(
            title=f"烈度最高的 {min(shown, len(result.alerted))} 个村 (first villages)"
        )
        for header in (
            "村 village",
            "代码 code",
            "级别 level",
            "烈度 degree",
            "距离 km",
            "倒计时 s",
        ):
            villages.add_column(header, justify="left" if header[0] in "村代级" else "right")
        for v in result.alerted[:shown]:
            villages.add_row(
                v.name,
                v.code,
                f"[{LEVEL_STYLES[v.level]}]{LEVEL_NAMES[v.level]}[/]",
                str(v.degree),
                f"{v.distance_km:.1f}",
                "盲区 blind" if v.blind else f"{v.countdown_s:.1f}",
            )
        console.print(villages)
    for text in result.texts:
        console.print(f"短信 SMS: {text}", soft_wrap=True)
