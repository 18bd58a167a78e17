"""The roles of a warnd process (``warnd run --roles``): which of its loops it runs.

Operators split warnd across machines by role: front machines serve the API, others plan,
dispatch and escalate. Every role works through PostgreSQL only, so any number of processes may
hold the same role; what must happen once is guarded in the database (see the README's "Several
processes").
"""

from __future__ import annotations

from enum import StrEnum

from warnd.core.errors import ConfigError


class Role(StrEnum):
    # HTTP: API, console, feeds, webhooks, probes; the seismic MQTT feed and the earthquake
    # fast path
    API = "api"
    PLAN = "plan"  # warnings into deliveries, call-outs and field tasks; gongs for silent speakers
    # Competes for the channels; sends on those it holds and records what their connections
    # report; hands back leases of dead workers
    DISPATCH = "dispatch"
    # Timers: escalation of call-outs and field tasks, scheduled drills, warning expiry, feed
    # heartbeats and loudspeaker staleness
    ESCALATE = "escalate"
    INBOUND = "inbound"  # receipts that came before their send was recorded; reply counts


ALL_ROLES = frozenset(Role)


def parse_roles(text: str) -> frozenset[Role]:
    """``api,plan,…`` (spaces and case ignored; ``all`` for every role). Raises ConfigError
    naming every unknown role, or an empty list."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"--roles: no role given; choose from {', '.join(Role)} (or all)")
    if "all" in names:
        names = [n for n in names if n != "all"] + list(Role)
    known = {role.value for role in Role}
    unknown = sorted({n for n in names if n not in known})
    if unknown:
        raise ConfigError(
            f"--roles: unknown role{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)}; choose from {', '.join(Role)} (or all)"
        )
    return frozenset(Role(n) for n in names)
