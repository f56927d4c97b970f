"""What a test registry needs before it starts: its binary, htpasswd lines, a TLS certificate.

Kept apart from ``server`` (the process's life: config, start, stop, restart, GC)
because these are plain functions a test may use on their own, and the pytest
header calls :func:`find_registry_binary` without starting anything.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cryptography is imported only where a certificate is made
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

__all__ = [
    "BINARY_ENV",
    "BINARY_NAMES",
    "RegistryNotFoundError",
    "find_registry_binary",
    "hash_htpasswd",
    "make_self_signed_cert",
]

BINARY_ENV = "REGPRUNE_REGISTRY_BIN"
BINARY_NAMES = ("registry", "docker-registry")


class RegistryNotFoundError(RuntimeError):
    """No registry binary could be found; the message says how to install one."""


def find_registry_binary() -> str:
    """Return the path of a Distribution registry binary.

    Looks at ``$REGPRUNE_REGISTRY_BIN`` first, then ``registry`` and ``docker-registry``
    on ``PATH``. Raises :class:`RegistryNotFoundError` saying how to install one.
    """
    configured = os.environ.get(BINARY_ENV)
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise RegistryNotFoundError(
                f"${BINARY_ENV} is set to {configured!r}, which is not an executable file."
            )
        return os.path.abspath(found)  # the registry runs with its root as cwd
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RegistryNotFoundError(
        "No CNCF Distribution registry binary found (looked for $"
        f"{BINARY_ENV}, then {' and '.join(BINARY_NAMES)} on PATH). "
        "On Debian/Ubuntu install it with `apt-get install docker-registry` "
        "(or run `scripts/ensure-registry.sh` as root); elsewhere build or download "
        f"`registry` from github.com/distribution/distribution and set ${BINARY_ENV}."
    )


def hash_htpasswd(password: str) -> str:
    """Hash a password with bcrypt, in a form Distribution's htpasswd reader accepts.

    Uses the ``bcrypt`` package when installed, else the C library's ``crypt(3)``
    (glibc's libxcrypt knows ``$2b$``) through the stdlib ``crypt`` module of Python
    3.11/3.12.
    """
    try:
        import bcrypt
    except ImportError:
        pass
    else:
        # Cost 4 is the minimum: these hashes guard throwaway test registries, and the
        # registry checks them on every request.
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError as exc:
            raise RuntimeError(
                "htpasswd needs bcrypt: pip install bcrypt (it is in regprune's dev extras)"
            ) from exc
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("the C library's crypt() cannot make bcrypt hashes: pip install bcrypt")
    return hashed


def self_signed_certificate(
    key: CertificateIssuerPrivateKeyTypes,
    name: x509.Name,
    before: dt.timedelta,
    after: dt.timedelta,
    *,
    alt: x509.GeneralName | None = None,
) -> x509.Certificate:
    """A CA certificate for ``key`` naming ``name``, issued by itself, valid from
    ``before`` ago to ``after`` from now (with ``alt`` as its subject alternative name)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - before)
        .not_valid_after(now + after)
    )
    if alt is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([alt]), critical=False)
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    ).sign(key, hashes.SHA256())


def make_self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write a self-signed certificate and key for ``host`` into ``directory``.

    Returns ``(cert_path, key_path)``, ready for ``RegistryServer(tls=...)``; point
    clients at the certificate, e.g. ``ImagePusher(url, verify=cert_path)`` or
    ``httpx.Client(verify=ssl.create_default_context(cafile=cert_path))``. Needs
    ``cryptography``.
    """
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    cert = self_signed_certificate(
        key, name, dt.timedelta(minutes=5), dt.timedelta(days=2), alt=alt
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "registry.crt", directory / "registry.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
