"""The duty officer's board (值班台) as JSON: the figures the console's board renders."""

from __future__ import annotations

from aiohttp import web

from warnd.app.board import board_figures
from warnd.web.http import SERVICES, json_response


async def get_board(request: web.Request) -> web.Response:
    return json_response(await board_figures(request.app[SERVICES]))
