"""Loading the policy file with its templates, and holding the one in force across reloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import ValidationError

from warnd.core.config import config_error, parse_toml
from warnd.core.errors import ConfigError
from warnd.policy.model import Policy
from warnd.policy.render import check_templates
from warnd.policy.templates import load_templates


def load_policy(path: Path) -> Policy:
    """The policy in ``path`` with its templates (``templates.folder``, relative to the file).

    Raises ``ConfigError`` naming the file, the key path and the reason.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        policy = Policy.model_validate(parse_toml(raw, path))
    except ValidationError as exc:
        raise config_error(path, exc, Policy) from None
    folder = path.parent / policy.templates.folder
    templates = load_templates(folder)
    digest = hashlib.sha256(raw)
    digest.update(templates.fingerprint.encode())
    try:
        check_templates(policy, templates)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return policy.with_templates(templates, digest.hexdigest()[:16])


class PolicyHolder:
    """The policy in force; ``reload`` swaps it only for a valid one (SIGHUP, admin action)."""

    def __init__(self, path: Path, policy: Policy | None = None) -> None:
        self.path = path
        self._current = policy if policy is not None else load_policy(path)

    @property
    def current(self) -> Policy:
        return self._current

    def reload(self) -> Policy:
        """Load the file again; on ``ConfigError`` the previous policy stays and the error rises."""
        fresh = load_policy(self.path)
        self._current = fresh
        return fresh

    def __call__(self) -> Policy:
        """The policy in force; lets the holder be passed where a ``Callable[[], Policy]`` is."""
        return self._current
