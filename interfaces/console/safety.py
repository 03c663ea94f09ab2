"""What the console lets a browser load: its own files, and media from Meta's CDNs only.

Texts, usernames and attachment URLs come from strangers on Instagram. Templates escape
every value (Jinja's autoescape); this module decides which URLs may become an `src` at all,
and the Content-Security-Policy that forbids the browser anything else (no inline script,
no eval, no other origin).
"""

from __future__ import annotations

from urllib.parse import urlsplit

META_CDN_SUFFIXES = (".fbcdn.net", ".cdninstagram.com", ".fbsbx.com")
"""Where Meta serves message media from (lookaside.fbsbx.com, scontent-*.cdninstagram.com,
scontent-*.xx.fbcdn.net)."""

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' " + " ".join(f"https://*{s}" for s in META_CDN_SUFFIXES),
        "media-src " + " ".join(f"https://*{s}" for s in META_CDN_SUFFIXES),
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def meta_media_url(url: object) -> str | None:
    """`url` if it is an https:// URL on one of Meta's CDNs, else None (never shown)."""
    if not isinstance(url, str) or len(url) > 4096:
        return None
    try:
        parts = urlsplit(url)
        odd = parts.username is not None or parts.password is not None or parts.port is not None
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or odd:
        return None
    return url if host.endswith(META_CDN_SUFFIXES) else None
