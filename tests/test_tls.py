"""warnd's own listener over TLS ([http] tls_cert and tls_key), for sites without a proxy."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme

from warnd.core.config import AppConfig
from warnd.core.errors import ConfigError
from warnd.runtime.daemon import Daemon, make_channels, tls_context
from warnd.runtime.settings import Settings


def config(tmp_path: Path, ca: trustme.CA) -> AppConfig:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "warnd.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "warnd.key"))
    return AppConfig.model_validate(
        {"http": {"tls_cert": "warnd.pem", "tls_key": "warnd.key"}},
        context={"base": tmp_path},
    )


async def test_warnd_serves_https_with_the_configured_certificate(
    seeded: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    daemon = Daemon(
        Settings(http_port=0),
        simulate=True,
        config=config(tmp_path, ca),
        channels=make_channels({}, simulate=True),
    )
    client = ssl.create_default_context()
    ca.configure_trust(client)
    async with daemon.running(seeded), aiohttp.ClientSession() as http:
        url = f"https://127.0.0.1:{daemon.port}/healthz"
        async with http.get(url, ssl=client) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served on that port
            async with http.get(f"http://127.0.0.1:{daemon.port}/healthz") as response:
                await response.read()


def test_a_certificate_that_cannot_be_loaded_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "warnd.pem").write_text("not a certificate")
    (tmp_path / "warnd.key").write_text("not a key")
    broken = AppConfig.model_validate(
        {"http": {"tls_cert": "warnd.pem", "tls_key": "warnd.key"}},
        context={"base": tmp_path},
    )
    with pytest.raises(ConfigError, match=r"http\.tls_cert / http\.tls_key"):
        tls_context(broken.http)


def test_a_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="both tls_cert and tls_key"):
        AppConfig.model_validate({"http": {"tls_cert": "/etc/warnd/warnd.pem"}})
