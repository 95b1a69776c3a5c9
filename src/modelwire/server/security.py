"""Transport security and credentials from the settings: TLS and mutual TLS for both
ports, the refusal to serve other machines in plaintext, and the tokens file."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from typing import Any

import grpc

from modelwire.core.tokens import TokenStore
from modelwire.settings import Settings

__all__ = ["check_exposure", "load_tokens", "rest_tls_options", "server_credentials"]

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to listen beyond this machine without TLS, unless told to (`insecure`)."""
    exposed = [host for host in settings.hosts if not is_loopback(host)]
    if not exposed or settings.tls:
        return
    if not settings.insecure:
        raise OSError(
            f"refusing to serve {', '.join(exposed)} without TLS: give --tls-cert and "
            "--tls-key (modelwire certs dev DIR makes test ones), or --insecure to "
            "serve plaintext anyway"
        )
    log.warning(
        "serving %s WITHOUT TLS (--insecure): anyone on the network can read and alter the traffic",
        ", ".join(exposed),
    )
    if settings.tokens_file is None:
        log.warning("and without tokens: anyone who can connect may load, train and delete")


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    chain = settings.tls_cert.read_bytes()
    key = settings.tls_key.read_bytes()
    client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def rest_tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS settings for the REST port (empty without TLS)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_cert),
        "ssl_keyfile": str(settings.tls_key),
    }
    if settings.tls_client_ca is not None:
        options["ssl_ca_certs"] = str(settings.tls_client_ca)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


def load_tokens(settings: Settings) -> TokenStore | None:
    if settings.tokens_file is None:
        return None
    tokens = TokenStore.load(settings.tokens_file)
    log.info("authentication on: %d token(s) from %s", len(tokens), settings.tokens_file)
    return tokens
