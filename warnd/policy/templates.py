"""The message templates: Jinja2 files in one folder, compiled once per policy load.

Templates are sandboxed and strict (an unknown variable is an error, not an empty string), so a
mistake in a template fails the policy load instead of sending a text with a hole in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from warnd.core.errors import ConfigError


@dataclass(frozen=True)
class Templates:
    """The compiled templates of one folder, by file name."""

    folder: Path
    compiled: Mapping[str, jinja2.Template]
    fingerprint: str  # digest of every file's name and text

    def get(self, name: str) -> jinja2.Template:
        try:
            return self.compiled[name]
        except KeyError:
            raise ConfigError(f"{self.folder / name}: template not found") from None


def load_templates(folder: Path) -> Templates:
    """Compile every ``*.j2`` file in ``folder``; a syntax error names the file and line.

    Files whose name starts with ``_`` are shared pieces for ``{% import %}``, not messages.
    """
    if not folder.is_dir():
        raise ConfigError(f"{folder}: template folder not found")
    sources: dict[str, str] = {}
    for file in sorted(folder.glob("*.j2")):
        try:
            sources[file.name] = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from None
    environment = SandboxedEnvironment(
        loader=jinja2.DictLoader(sources),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain text for phones and loudspeakers, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
    )
    compiled = {}
    digest = hashlib.sha256()
    for name, source in sources.items():
        digest.update(f"{name}\0{source}\0".encode())
        try:
            compiled[name] = environment.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"{folder / name}:{exc.lineno}: {exc.message}") from None
    return Templates(folder, compiled, digest.hexdigest()[:16])
