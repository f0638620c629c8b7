"""Throwaway certificates and keys for one control plane, made with the ``openssl`` CLI.

One CA signs the API server's serving certificate (valid for 127.0.0.1, localhost and the
in-cluster names) and an admin client certificate in ``system:masters``. A separate key pair
signs service-account tokens. Everything is ECDSA P-256, which is fast to generate.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

VALID_DAYS = 2
SERVER_SANS = (
    "IP:127.0.0.1",
    "IP:10.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated PEM files."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path


def make_pki(directory: Path) -> Pki:
    """Generate a fresh CA, serving and client certificates and a service-account key pair."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is required to generate control-plane certificates")
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "apiserver.crt",
        server_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=directory)

    def key(path: Path) -> None:
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))

    key(pki.ca_key)
    run(
        "req", "-x509", "-new", "-key", str(pki.ca_key), "-subj", "/CN=streampulse-test-ca",
        "-days", str(VALID_DAYS), "-out", str(pki.ca_cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip

    def leaf(cert: Path, cert_key: Path, subject: str, extensions: list[str]) -> None:
        key(cert_key)
        csr = cert.with_suffix(".csr")
        ext = cert.with_suffix(".ext")
        ext.write_text("\n".join(extensions) + "\n")
        run("req", "-new", "-key", str(cert_key), "-subj", subject, "-out", str(csr))
        run(
            "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
            "-CAcreateserial", "-days", str(VALID_DAYS), "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()

    leaf(
        pki.server_cert,
        pki.server_key,
        "/CN=kube-apiserver",
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=" + ",".join(SERVER_SANS),
        ],
    )
    leaf(
        pki.admin_cert,
        pki.admin_key,
        "/O=system:masters/CN=streampulse-admin",
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=clientAuth",
        ],
    )
    key(pki.service_account_key)
    run(
        "pkey", "-in", str(pki.service_account_key), "-pubout", "-out", str(pki.service_account_pub)
    )
    return pki
