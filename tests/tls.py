"""Throw-away certificates for TLS tests: a CA of the test's own and a server certificate
it signs for 127.0.0.1 and localhost (made with the openssl command)."""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.servers import absent


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate: what a client trusts
    cert: Path  # the server's certificate, signed by the CA
    key: Path  # the server's private key


def make_ca(root: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    root.mkdir(parents=True, exist_ok=True)
    ca, key = root / f"{name}.pem", root / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(ca),
    )  # fmt: skip
    return ca, key


def make_certificates(root: Path) -> Certificates:
    """A CA and a server certificate it signed, valid for a day."""
    ca, ca_key = make_ca(root, "test-ca")
    key, request, cert = root / "server.key", root / "server.csr", root / "server.pem"
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(key), "-out", str(request),
    )  # fmt: skip
    names = root / "names.ext"
    names.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(names), "-out", str(cert),
    )  # fmt: skip
    key.chmod(0o644)  # a RabbitMQ node reads it as the user it runs as
    return Certificates(ca=ca, cert=cert, key=key)


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        absent("the openssl command is not installed")
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=60)
