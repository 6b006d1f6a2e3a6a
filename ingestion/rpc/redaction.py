"""Keeping an RPC URL's secrets out of messages, logs and reprs.

Node URLs carry credentials: ``user:pass@``, an API key as a path segment (Infura ``/v3/<key>``,
QuickNode, Ankr...) or as a query value. The URL appears in messages, logs and reprs only through
``redact_url``; text that comes from the network (httpx errors, error bodies, node messages) goes
through a ``Redactor``, which scrubs it of the URL's secret parts. Importing this module adds a
filter to the ``httpx`` logger that redacts the URLs in its "HTTP Request: ..." lines.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

__all__ = ["REDACTED", "Redactor", "redact_url", "validate_url"]

REDACTED = "***"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.~%]+")
_WORDS = re.compile(r"[a-z]+(?:[-_.][a-z]+)*")  # "eth-mainnet", "ethereum_archive": not keys
_API_VERSION = re.compile(r"v\d+", re.IGNORECASE)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-~%]{16,}")
_WEB_SCHEMES = ("http", "https", "ws", "wss")


def _secret_segment(segment: str, previous: str) -> bool:
    """Does a path segment look like an API key?

    Anything of 8+ characters right after an API-version segment (Infura ``/v3/<key>``, Alchemy
    ``/v2/<key>``), and any token of 16+ URL-safe characters that is not plain lower-case words
    (QuickNode, Ankr, Chainstack, GetBlock put 32-64 character keys straight in the path).
    """
    if not segment:
        return False
    if _API_VERSION.fullmatch(previous) and len(segment) >= 8:
        return True
    return (len(segment) >= 16 and _TOKEN_CHARS.fullmatch(segment) is not None
            and _WORDS.fullmatch(segment) is None)


def _redact_query(query: str) -> str:
    if not query:
        return ""
    parts = []
    for piece in query.split("&"):
        name, eq, _value = piece.partition("=")
        parts.append(f"{name}={REDACTED}" if eq else (REDACTED if piece else piece))
    return "&".join(parts)


def _redact_freeform(text: str) -> str:
    """Best-effort redaction of something that does not parse as a web URL."""
    text = re.sub(r"[^\s/@]*@", f"{REDACTED}@", text)  # user:pass@
    text = re.sub(r"=[^&#\s]*", f"={REDACTED}", text)  # query values
    text = re.sub(r"#.*", f"#{REDACTED}", text)
    return _LONG_TOKEN.sub(
        lambda m: m.group(0) if _WORDS.fullmatch(m.group(0)) else REDACTED, text)


def redact_url(url: str) -> str:
    """The URL with its credentials hidden, for messages and logs.

    Keeps scheme, host and port and the shape of the path; replaces ``user:pass@`` by ``***@``,
    path segments that look like API keys by ``***``, every query value by ``***`` and any
    fragment by ``***``. ``http://127.0.0.1:8545`` is returned unchanged. Never raises.
    """
    if not isinstance(url, str):
        return REDACTED
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in _WEB_SCHEMES or not parts.netloc:
            return _redact_freeform(url.strip())
        userinfo, at, hostport = parts.netloc.rpartition("@")
        netloc = f"{REDACTED}@{hostport}" if at else hostport
        segments = parts.path.split("/")
        path = "/".join(
            REDACTED if _secret_segment(seg, segments[i - 1] if i else "") else seg
            for i, seg in enumerate(segments)
        )
        query = _redact_query(parts.query)
        fragment = REDACTED if parts.fragment else ""
        return urlunsplit((parts.scheme, netloc, path, query, fragment))
    except Exception:  # noqa: BLE001 - a redactor must never fail
        return "<unparseable URL>"


def _url_secrets(url: str) -> list[str]:
    """The substrings of ``url`` that ``redact_url`` hides (and their unquoted forms), longest
    first, for scrubbing text that came from the network. Fragments under 4 characters are
    skipped: too short to be a credential and too likely to garble the message."""
    found: set[str] = {url, url.strip()}
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return sorted(found, key=len, reverse=True)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        found.update((userinfo, user, password))
    segments = parts.path.split("/")
    found.update(seg for i, seg in enumerate(segments)
                 if _secret_segment(seg, segments[i - 1] if i else ""))
    for piece in parts.query.split("&"):
        found.add(piece.partition("=")[2] or piece)
    found.add(parts.fragment)
    found |= {unquote(s) for s in found}
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


class Redactor:
    """Scrubs one URL's secrets from text that came from the network, and quotes replies and
    bodies (shortened, scrubbed) for messages. The secrets are found once, at construction."""

    def __init__(self, url: str) -> None:
        self._secrets = _url_secrets(url)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def snippet(self, value: Any) -> str:
        """A parsed JSON value, as JSON text cut at 200 characters."""
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = repr(value)
        return self.scrub(text[:200] + ("..." if len(text) > 200 else ""))

    def snippet_bytes(self, content: bytes) -> str:
        """A raw reply body, cut at 200 bytes."""
        text = content[:200].decode("utf-8", "replace")
        return self.scrub(repr(text) + ("..." if len(content) > 200 else ""))

    def body_hint(self, content: bytes) -> str:
        """``": <snippet>"`` for a non-blank body, to end a message with; else nothing."""
        return f": {self.snippet_bytes(content)}" if content.strip() else ""


def validate_url(url: object) -> None:
    """``ValueError`` unless ``url`` is an http(s) URL with a host (and a valid port), with a
    message that shows the URL redacted and no secret of it."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"invalid RPC URL {url!r}: expected an http:// or https:// URL")
    shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError on a bad port
    except ValueError as err:
        raise ValueError(f"invalid RPC URL {shown!r}: {Redactor(url).scrub(str(err))}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"invalid RPC URL {shown!r}: expected an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"invalid RPC URL {shown!r}: no host")
    del port  # parsed only to validate it


class _RedactHttpxUrls(logging.Filter):
    """httpx logs ``HTTP Request: POST <url> ...`` at INFO, credentials included: redact them."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(_is_httpx_url(a) for a in args):
            record.args = tuple(redact_url(str(a)) if _is_httpx_url(a) else a for a in args)
        return True


def _is_httpx_url(value: object) -> bool:
    """An ``httpx.URL``, known without importing httpx (records only come once it is loaded)."""
    kind = type(value)
    return kind.__name__ == "URL" and kind.__module__.startswith("httpx")


def _install_httpx_filter() -> None:
    logger = logging.getLogger("httpx")
    if not any(type(f).__name__ == _RedactHttpxUrls.__name__ for f in logger.filters):
        logger.addFilter(_RedactHttpxUrls())


_install_httpx_filter()
