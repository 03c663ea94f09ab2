"""The TLS context with which every outgoing HTTPS client of a process verifies servers:
Meta's Graph API and Send API, and the CRMs' webhooks."""

from __future__ import annotations

import functools
import os
import ssl

import certifi


@functools.cache
def outgoing_tls() -> ssl.SSLContext:
    """The process's one client context: the authorities the operator names in
    `SSL_CERT_FILE` (a file) or `SSL_CERT_DIR` (a directory), as OpenSSL and httpx read
    them, else the public ones certifi carries; hostnames checked, TLS 1.2 at least.

    One for all, so every client trusts the same authorities, and the CA store (~1 MiB
    with certifi's) is in memory once, not once a client. A context is safe to share
    between threads and event loops."""
    cafile = os.environ.get("SSL_CERT_FILE")
    capath = os.environ.get("SSL_CERT_DIR")
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    if capath:
        return ssl.create_default_context(capath=capath)
    return ssl.create_default_context(cafile=certifi.where())
