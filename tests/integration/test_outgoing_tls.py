"""Every outgoing HTTPS client of a process (Meta's Graph API, the Send API, the CRMs)
verifies servers with one TLS context: the same certificate authorities, the operator's
`SSL_CERT_FILE` or `SSL_CERT_DIR` when set, and one copy of the CA store in memory.

Against a real HTTPS server on loopback whose certificate only a test authority signed."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infrastructure.conversations_api import GraphApiHistory
from infrastructure.crm_urls import CrmUrlPolicy
from infrastructure.graph_api import GraphApiProfiles
from infrastructure.http1_client import HttpError, KeepAliveClient
from infrastructure.instagram_api import InstagramGraphClient
from infrastructure.outgoing_tls import outgoing_tls

LOOPBACK_ALLOWED = CrmUrlPolicy(allow_private=True, https_only=True)


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, signer: Any
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
    return builder.sign(signer, hashes.SHA256())


class _Answers(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        body = json.dumps({"id": "m-1", "message_id": "m-1", "name": "Ada"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(the test authority's certificate file, an HTTPS server on loopback it signed)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("dmledger test authority", ca_key, None, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _certificate("127.0.0.1", key, ca, ca_key)
    ca_file = tmp_path / "authority.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = tmp_path / "server.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + certificate.public_bytes(serialization.Encoding.PEM)
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(chain)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ca_file, f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        outgoing_tls.cache_clear()


@pytest.fixture
def trusted(authority: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The operator trusts the test authority (SSL_CERT_FILE): the server's URL."""
    ca_file, url = authority
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    outgoing_tls.cache_clear()
    return url


async def test_crm_deliveries_trust_the_authorities_the_operator_names(trusted: str) -> None:
    client = KeepAliveClient(LOOPBACK_ALLOWED, timeout=5.0)
    try:
        answer = await client.post(f"{trusted}/crm/hook", [], b"{}")
    finally:
        client.close()

    assert answer.status == 200


def test_graph_api_lookups_trust_the_authorities_the_operator_names(trusted: str) -> None:
    profiles = GraphApiProfiles(trusted, "v23.0")
    try:
        profile = profiles.lookup("token", "igsid-1")
    finally:
        profiles.close()

    assert isinstance(profile, dict)
    assert profile["name"] == "Ada"


async def test_a_server_no_trusted_authority_signed_is_refused(
    authority: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the operator names no authority: the public ones (certifi's) do not know the test's
    _, url = authority
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    outgoing_tls.cache_clear()
    client = KeepAliveClient(LOOPBACK_ALLOWED, timeout=5.0)
    profiles = GraphApiProfiles(url, "v23.0")
    try:
        with pytest.raises(HttpError) as refused:
            await client.post(f"{url}/crm/hook", [], b"{}")
        looked_up = profiles.lookup("token", "igsid-1")
    finally:
        client.close()
        profiles.close()

    assert refused.value.name == "ConnectError"
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert looked_up is None


async def test_every_outgoing_client_loads_the_certificate_authorities_once(
    trusted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a count of the CA stores a process loads
    loads: list[object] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args or kwargs)
        load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    outgoing_tls.cache_clear()
    # when each client the composition builds makes an HTTPS request
    profiles = GraphApiProfiles(trusted, "v23.0")
    history = GraphApiHistory(trusted, "v23.0")
    send_api = InstagramGraphClient(trusted, "v23.0")
    crm = KeepAliveClient(LOOPBACK_ALLOWED, timeout=5.0)
    try:
        assert isinstance(profiles.lookup("token", "igsid-1"), dict)
        history.conversations("token", after=None)
        sent = await send_api.send(
            ig_account_id="17841400000000001",
            access_token="token",
            recipient_id="igsid-1",
            text="hello",
            attachment=None,
            tag=None,
        )
        answer = await crm.post(f"{trusted}/crm/hook", [], b"{}")
    finally:
        profiles.close()
        history.close()
        await send_api.aclose()
        crm.close()

    # then all of them were answered, and the authorities were loaded once
    assert (sent.transport, sent.status_code) == ("answered", 200)
    assert answer.status == 200
    assert len(loads) == 1
