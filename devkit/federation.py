"""Several federating Synapses on one machine, for the tests of teams across homeservers.

Each server has an IP-literal name with an explicit port (`127.0.0.2:PORT`), so no
`.well-known` or SRV look-up is made, and a TLS federation listener on that address with a
self-signed certificate naming the IP (Synapse federates only over TLS; the servers are told not
to verify each other's certificates). Synapse's default `ip_range_blacklist` blocks 127.0.0.0/8,
which for IP-literal names is the only check, so it is emptied (design section 12).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.devserver import LocalSynapse, free_port
from bot.files import write_private

CERTIFICATE_FILE = "federation.crt"
KEY_FILE = "federation.key"

_FEDERATION_LIMITS = {
    "window_size": 1000,
    "sleep_limit": 10000,
    "sleep_delay": 1,
    "reject_limit": 10000,
    "concurrent": 1000,
}


def write_self_signed(host: str, certificate: Path, key: Path) -> None:
    """A self-signed certificate for `host` (an IP literal) in subjectAltName, and its key."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    write_private(key, private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii"))
    write_private(certificate, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))


class FederatingSynapse(LocalSynapse):
    """A LocalSynapse named `host:federation_port` that federates with the others on this
    machine. Stopping and starting it again keeps its name, keys and data (an outage)."""

    def __init__(self, data_dir: Path, host: str, **options: Any) -> None:
        self.federation_port = free_port(host)
        super().__init__(
            data_dir,
            port=free_port(host),
            server_name=f"{host}:{self.federation_port}",
            host=host,
            **options,
        )

    def overrides(self) -> dict[str, Any]:
        certificate = self.data_dir / CERTIFICATE_FILE
        key = self.data_dir / KEY_FILE
        if not certificate.exists():
            write_self_signed(self.host, certificate, key)
        config = super().overrides()
        config["listeners"].append(
            {
                "port": self.federation_port,
                "bind_addresses": [self.host],
                "type": "http",
                "tls": True,
                "x_forwarded": False,
                "resources": [{"names": ["federation"], "compress": False}],
            }
        )
        config.update(
            {
                "tls_certificate_path": str(certificate),
                "tls_private_key_path": str(key),
                "federation_verify_certificates": False,
                "ip_range_blacklist": [],
                "trusted_key_servers": [],
                "rc_federation": _FEDERATION_LIMITS,
            }
        )
        return config
