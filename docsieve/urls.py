"""The canonical form of a web address: one spelling per resource, so a page reached through different links
(tracking parameters, letter case, default ports, percent-encoding, fragments) is fetched and stored once."""

from __future__ import annotations

import ipaddress
import re
import string
from urllib.parse import quote, unquote, unquote_plus, urljoin, urlsplit

import idna
import lxml.html
from lxml import etree

SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Query parameters that only say where a click came from: dropped, the order of the others kept.
TRACKING_PREFIXES = ("utm_", "mtm_")
TRACKING_PARAMETERS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "igsh",
        "_ga",
        "_gl",
        "yclid",
        "ref_src",
        "ref_url",
        "twclid",
        "ttclid",
        "li_fat_id",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "vero_id",
        "oly_anon_id",
        "oly_enc_id",
        "wickedid",
        "pk_campaign",
        "pk_kwd",
        "pk_source",
        "pk_medium",
    }
)

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 pchar and "/" stay as they are in a path ("?" too in a query); anything else is percent-encoded.
_PATH_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_ESCAPE = re.compile(r"(%[0-9A-Fa-f]{2})")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_IPV4_PART = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Browsers drop leading and trailing C0 controls and spaces, and tabs and newlines anywhere.
_C0_AND_SPACE = "".join(map(chr, range(33)))
_TAB_NEWLINE = re.compile(r"[\t\n\r]")


def canonicalize(url: str) -> str:
    """The canonical form of an absolute http(s) URL; ``ValueError`` with a readable message otherwise."""
    cleaned = _TAB_NEWLINE.sub("", url.strip(_C0_AND_SPACE))
    try:
        parts = urlsplit(cleaned)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            shown = f"scheme {scheme!r}" if scheme else "no scheme"
            raise ValueError(f"{shown}: only absolute http and https URLs can be fetched")
        if not parts.hostname:
            raise ValueError("no host")
        host = _canonical_host(parts.hostname)
        port = parts.port  # ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from None
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(_normalize_escapes(parts.path, _PATH_SAFE))
    query = _clean_query(parts.query)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def canonical_link(html: str, base_url: str) -> str | None:
    """The page's ``<link rel="canonical">`` resolved against base_url (or the page's ``<base href>``) and
    canonicalized; None when there is none or it is not a usable http(s) URL."""
    # A parser per call: lxml parser objects must not be shared between threads.
    parser = lxml.html.HTMLParser(encoding="utf-8", no_network=True, remove_comments=True, remove_pis=True)
    try:
        root = lxml.html.fromstring(html.encode("utf-8", "replace"), parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None  # empty or unparsable document
    try:
        base_href = next((b.get("href", "").strip() for b in root.iter("base") if b.get("href")), "")
        base = urljoin(base_url, base_href)
        for link in root.iter("link"):
            href = link.get("href")
            if href and "canonical" in (link.get("rel") or "").lower().split():
                return canonicalize(urljoin(base, href.strip()))
    except ValueError:
        return None
    return None


def _canonical_host(host: str) -> str:
    """Lowercase, IDNA-encoded host; IPv4 in dotted-quad form, IPv6 compressed in brackets."""
    if ":" in host:  # an IPv6 literal; urlsplit removed the brackets
        return f"[{ipaddress.IPv6Address(host).compressed}]"
    host = unquote(host)
    host = host.removesuffix(".")  # the root label: "example.com." is "example.com"
    if not host.isascii():
        host = idna.encode(host, uts46=True).decode("ascii")  # idna.IDNAError is a ValueError
    host = host.lower()
    ipv4 = _ipv4_literal(host)
    if ipv4 is not None:
        return ipv4
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"invalid host name {host!r}")
    return host


def _ipv4_literal(host: str) -> str | None:
    """The dotted-quad form of a host that is an IPv4 address in any of the forms browsers and resolvers accept
    (``2130706433``, ``0177.0.0.1``, ``0x7f.1``); None for a host name. As in the WHATWG URL standard, a host
    whose last label is a number must be a valid IPv4 address."""
    labels = host.split(".")
    if not _IPV4_PART.fullmatch(labels[-1]):
        return None
    if len(labels) > 4 or not all(_IPV4_PART.fullmatch(label) for label in labels):
        raise ValueError(f"invalid IPv4 address {host!r}")
    numbers = [_ipv4_number(label, host) for label in labels]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"invalid IPv4 address {host!r}")
    value = last + sum(n << (8 * (3 - i)) for i, n in enumerate(head))
    return str(ipaddress.IPv4Address(value))


def _ipv4_number(label: str, host: str) -> int:
    if label.startswith("0x"):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        if not set(label) <= set("01234567"):
            raise ValueError(f"invalid IPv4 address {host!r}")
        return int(label, 8)
    return int(label)


def _normalize_escapes(text: str, safe: frozenset[str]) -> str:
    """Escapes of unreserved characters decoded, the others in uppercase hex; characters that are not allowed
    in the component (spaces, non-ASCII, a stray ``%``) percent-encoded as UTF-8."""
    pieces = _ESCAPE.split(text)
    for i, piece in enumerate(pieces):
        if i % 2:  # an escape
            char = chr(int(piece[1:], 16))
            pieces[i] = char if char in _UNRESERVED else piece.upper()
        else:
            pieces[i] = "".join(c if c in safe else quote(c, safe="") for c in piece)
    return "".join(pieces)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path; the empty path becomes ``/``."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    trailing_slash = bool(segments) and segments[-1] in (".", "..") and bool(kept)
    return "/" + "/".join(kept) + ("/" if trailing_slash else "")


def _clean_query(query: str) -> str:
    kept = [p for p in query.split("&") if p and not _is_tracking(unquote_plus(p.partition("=")[0]).lower())]
    return "&".join(_normalize_escapes(p, _QUERY_SAFE) for p in kept)


def _is_tracking(name: str) -> bool:
    return name in TRACKING_PARAMETERS or name.startswith(TRACKING_PREFIXES)


def url_key(url: str) -> str:
    """The canonical form of a URL, or the text itself when it is not one (it will be rejected)."""
    try:
        return canonicalize(url)
    except ValueError:
        return url
