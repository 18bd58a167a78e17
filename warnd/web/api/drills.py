"""Officers' operations on blind drills (双盲演练): schedule, list, read one, cancel. What a
reader sees of a scheduled drill depends on who they are (``warnd.app.drills``)."""

from __future__ import annotations

from aiohttp import web

from warnd.app import drills as use_cases
from warnd.web.http import SERVICES, USER, json_payload, json_response, path_id
from warnd.web.middleware import has_role


async def schedule_drill(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    payload = await json_payload(request)
    drill = await use_cases.schedule(services, request[USER].name, payload)
    return json_response(drill, status=201)


async def list_drills(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    user = request[USER]
    approver = has_role(user, "approver")
    return json_response(await use_cases.list_drills(services, user.name, approver=approver))


async def get_drill(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    drill_id = path_id(request, "drill_id")
    user = request[USER]
    drill = await use_cases.get_drill(
        services, user.name, drill_id, approver=has_role(user, "approver")
    )
    return json_response(drill)


async def approve_drill(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    drill_id = path_id(request, "drill_id")
    return json_response(await use_cases.approve(services, request[USER].name, drill_id))


async def cancel_drill(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    drill_id = path_id(request, "drill_id")
    return json_response(await use_cases.cancel(services, request[USER].name, drill_id))
