"""Which channel plugins exist, and how ``[channels.<name>]`` tables become configured channels.

Plugins are found explicitly: the ``warnd.channels`` entry-point group (installed packages declare
``<type> = "module:Class"``) plus :meth:`ChannelRegistry.register` for built-ins and tests. No
directory is ever scanned. Two plugins claiming one type name is an installation error, reported
with both origins, never resolved by load order.

This module raises :class:`ChannelConfigError` rather than a ``warnd`` error because channels may
not import ``warnd``; the daemon translates it. No message here ever contains a configured value,
so a secret mistyped into the wrong key cannot leak into a log through an error.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

from pydantic import ValidationError

from channels.base import Channel, ChannelConfig

ENTRY_POINT_GROUP = "warnd.channels"

# Type names appear in config files and metrics labels: keep them plain.
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
# Channel names appear in key paths ("channels.<name>.key") and in the deliveries table.
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")


class ChannelConfigError(Exception):
    """The channel configuration is invalid; each line names the key path and what is wrong."""

    def __init__(self, problems: Iterable[str] | str) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("\n".join(self.problems))


class DuplicateChannelTypeError(ChannelConfigError):
    """Two plugins claim the same channel type name; uninstall or rename one of them."""


@dataclass(frozen=True)
class _Plugin:
    """A registered plugin, loaded on first use so a broken unused plugin cannot stop the daemon."""

    target: str  # "module:Class"
    package: str  # the distribution that declared it, or "registered explicitly"
    load: Callable[[], object]

    @property
    def origin(self) -> str:
        """Where the plugin comes from, in words for an error message."""
        return f"{self.target} ({self.package})"


def error_location(loc: Sequence[int | str], root: str = "") -> str:
    """Where a pydantic error points, as a path under ``root``: ``(2, "status")`` is
    ``[2].status``, ``("links", "mobile", "host")`` under ``channels.sms`` is
    ``channels.sms.links.mobile.host``; empty for an error of the root itself without one."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


class ChannelRegistry:
    """Channel plugin classes by type name."""

    def __init__(self) -> None:
        self._plugins: dict[str, _Plugin] = {}
        self._classes: dict[str, type[Channel]] = {}

    def register(self, type_name: str, cls: type[Channel]) -> None:
        """Make ``cls`` available as ``type = "<type_name>"``; refuse a name another class holds."""
        if not (isinstance(cls, type) and issubclass(cls, Channel)):
            raise TypeError(f"channel type {type_name!r}: {cls!r} is not a Channel subclass")
        if inspect.isabstract(cls):
            raise TypeError(f"channel type {type_name!r}: {cls.__qualname__} is abstract")
        target = f"{cls.__module__}:{cls.__qualname__}"
        self._add(type_name, _Plugin(target, "registered explicitly", lambda: cls))
        self._classes[type_name] = cls

    def discover(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Add every plugin installed packages declare in the entry-point ``group``."""
        for entry in entry_points(group=group):
            package = f"package {entry.dist.name}" if entry.dist is not None else "unknown package"
            self._add(entry.name, _Plugin(entry.value, package, entry.load))

    def _add(self, type_name: str, plugin: _Plugin) -> None:
        if not _TYPE_NAME.match(type_name):
            raise ChannelConfigError(
                [
                    f"channel type name {type_name!r} ({plugin.origin}) must be lower-case "
                    "letters, digits and '_', starting with a letter"
                ]
            )
        known = self._plugins.get(type_name)
        if known is not None:
            if known.target == plugin.target:
                return  # the same class reached twice (entry point and explicit) is no conflict
            raise DuplicateChannelTypeError(
                [
                    f"channel type {type_name!r} is claimed twice: by {known.origin} "
                    f"and by {plugin.origin}; uninstall or rename one of them"
                ]
            )
        self._plugins[type_name] = plugin

    def types(self) -> list[str]:
        """The known type names, sorted."""
        return sorted(self._plugins)

    def plugin(self, type_name: str) -> type[Channel]:
        """The class registered for ``type_name``, loading its module on first use."""
        if type_name in self._classes:
            return self._classes[type_name]
        plugin = self._plugins.get(type_name)
        if plugin is None:
            raise ChannelConfigError([self._unknown(type_name)])
        try:
            loaded = plugin.load()
        except Exception as exc:  # any import-time failure of a third-party plugin
            raise ChannelConfigError(
                [f"channel type {type_name!r} ({plugin.origin}) cannot be loaded: {exc!r}"]
            ) from exc
        if not (isinstance(loaded, type) and issubclass(loaded, Channel)):
            raise ChannelConfigError(
                [f"channel type {type_name!r} ({plugin.origin}) is not a Channel subclass"]
            )
        if inspect.isabstract(loaded):
            raise ChannelConfigError(
                [f"channel type {type_name!r} ({plugin.origin}) is abstract and cannot be used"]
            )
        self._classes[type_name] = loaded
        return loaded

    def _unknown(self, type_name: str) -> str:
        return f"unknown channel type {type_name!r} (known: {', '.join(self.types()) or 'none'})"

    def build(self, tables: Mapping[str, Mapping[str, object]]) -> dict[str, Channel]:
        """Configured (not yet started) channels, one per ``[channels.<name>]`` table.

        Every table is checked before any channel is constructed, and all problems are reported
        together, so an operator fixes the file in one pass.
        """
        problems: list[str] = []
        validated: list[tuple[str, type[Channel], ChannelConfig]] = []
        for name, table in tables.items():
            at = f"channels.{name}"
            if not _CHANNEL_NAME.match(name):
                problems.append(
                    f"{at}: a channel name is letters, digits, '_' and '-', "
                    "starting with a letter or digit"
                )
                continue
            if not isinstance(table, Mapping):
                problems.append(f"{at}: expected a table ([{at}])")
                continue
            type_name = table.get("type")
            if type_name is None:
                problems.append(f"{at}.type: missing (known: {', '.join(self.types())})")
                continue
            if not isinstance(type_name, str):
                problems.append(f"{at}.type: must be a string (known: {', '.join(self.types())})")
                continue
            if type_name not in self._plugins:
                problems.append(f"{at}.type: {self._unknown(type_name)}")
                continue
            try:
                cls = self.plugin(type_name)
            except ChannelConfigError as exc:
                problems.extend(f"{at}.type: {problem}" for problem in exc.problems)
                continue
            try:
                config = cls.config_model.model_validate(dict(table))
            except ValidationError as exc:
                # Inputs are left out of the message on purpose: they may be secrets.
                problems.extend(
                    f"{error_location(error['loc'], at)}: {error['msg']}"
                    for error in exc.errors(include_input=False, include_url=False)
                )
                continue
            validated.append((name, cls, config))
        if problems:
            raise ChannelConfigError(problems)
        return {name: cls(name, config) for name, cls, config in validated}


@functools.cache
def default_registry() -> ChannelRegistry:
    """The process-wide registry: every installed ``warnd.channels`` plugin, discovered once."""
    registry = ChannelRegistry()
    registry.discover()
    return registry


def register(type_name: str, cls: type[Channel]) -> None:
    """Add a plugin class to the process-wide registry (built-ins not installed as packages)."""
    default_registry().register(type_name, cls)


def build_channels(
    tables: Mapping[str, Mapping[str, object]], *, registry: ChannelRegistry | None = None
) -> dict[str, Channel]:
    """Turn the ``[channels.<name>]`` tables into configured channels (see ChannelRegistry.build).

    Raises ChannelConfigError naming every invalid key path.
    """
    return (registry if registry is not None else default_registry()).build(tables)
