"""`modelwire certs dev DIR`: a development CA with a server and a client certificate, so
TLS and mutual TLS can be tried in a minute. Never for production: the keys are
unencrypted files."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from modelwire.cli.common import fail
from modelwire.core.extras import installed

__all__ = ["certs_app", "write_dev_certificates"]

certs_app = typer.Typer(help="Certificates for TLS and mutual TLS.", no_args_is_help=True)

DAYS = 365


def write_dev_certificates(folder: Path, hosts: list[str]) -> list[Path]:
    """ca.pem/ca.key, server.pem/server.key (valid for `hosts`), client.pem/client.key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelwire development"),
                x509.NameAttribute(NameOID.COMMON_NAME, common),
            ]
        )

    def save(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        key_path = folder / f"{stem}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("modelwire development CA"))
        .issuer_name(name("modelwire development CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    save("ca", ca_key, ca)

    def issue(common: str, usage: x509.ObjectIdentifier, names: list[x509.GeneralName]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        save(common, key, builder.sign(ca_key, hashes.SHA256()))

    alternative: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alternative.append(x509.DNSName(host))
    issue("server", ExtendedKeyUsageOID.SERVER_AUTH, alternative)
    issue("client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return [
        folder / f"{stem}.{ext}" for stem in ("ca", "server", "client") for ext in ("pem", "key")
    ]


@certs_app.command("dev")
def dev(
    folder: Annotated[Path, typer.Argument(help="Where to write the files.")],
    host: Annotated[
        list[str] | None,
        typer.Option(help="Name or address the server certificate is valid for (repeatable)."),
    ] = None,
) -> None:
    """Write a development CA, a server certificate (localhost, 127.0.0.1, ::1 unless
    --host says otherwise) and a client certificate, as PEM files."""
    if not installed("cryptography"):
        raise fail("writing certificates needs cryptography: pip install 'modelwire[certs]'")
    written = write_dev_certificates(folder, host or ["localhost", "127.0.0.1", "::1"])
    for path in written:
        typer.echo(str(path))
    typer.echo(
        f"serve:  modelwire serve --tls-cert {folder}/server.pem --tls-key {folder}/server.key"
        f" [--tls-client-ca {folder}/ca.pem]"
    )
    typer.echo(
        f"call:   modelwire classify IMAGE --ca {folder}/ca.pem"
        f" [--cert {folder}/client.pem --key {folder}/client.key]"
    )
