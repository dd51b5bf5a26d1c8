from __future__ import annotations

from pathlib import Path

import pytest

from docsieve.urls import canonical_link, canonicalize

PAGES = Path(__file__).parent / "fixtures" / "pages"


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTP://Example.COM", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://example.com/a#section-2", "https://example.com/a"),
        ("https://user:secret@example.com/a", "https://example.com/a"),
        ("https://example.com/a/./b/../c", "https://example.com/a/c"),
        ("https://example.com/a/b/..", "https://example.com/a/"),
        ("https://example.com/Path/Keeps/Case", "https://example.com/Path/Keeps/Case"),
        ("https://example.com/%7euser/%2fx%2Fy", "https://example.com/~user/%2Fx%2Fy"),
        ("https://example.com/%41%42c", "https://example.com/ABc"),
        ("https://example.com/caf\u00e9 menu", "https://example.com/caf%C3%A9%20menu"),
        ("https://example.com/100%", "https://example.com/100%25"),
        ("https://example.com/?", "https://example.com/"),
        ("https://example.com/a?b=1&utm_source=x&a=2&UTM_Medium=y&fbclid=z&gclid=1", "https://example.com/a?b=1&a=2"),
        (
            "https://example.com/a?id=5&msclkid=1&mc_cid=2&mc_eid=3&igshid=4&_ga=5&yclid=6&ref_src=7&dclid=8",
            "https://example.com/a?id=5",
        ),
        ("https://example.com/a?utm_source=x", "https://example.com/a"),
        ("https://example.com/a?q=%e2%82%ac&flag&x=", "https://example.com/a?q=%E2%82%AC&flag&x="),
        ("https://example.com/search?q=a+b", "https://example.com/search?q=a+b"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("https://موقع.example/خبر", "https://xn--4gbrim.example/%D8%AE%D8%A8%D8%B1"),
        ("https://example.com./a", "https://example.com/a"),
        ("https://www_1.example.com/", "https://www_1.example.com/"),
        ("  https://example.com/a\n/b \t", "https://example.com/a/b"),
        ("http://2130706433/", "http://127.0.0.1/"),
        ("http://0177.0.0.1/", "http://127.0.0.1/"),
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("http://127.1/", "http://127.0.0.1/"),
        ("http://[::FFFF:127.0.0.1]:8080/", "http://[::ffff:7f00:1]:8080/"),
        ("http://[2001:DB8:0:0::1]/", "http://[2001:db8::1]/"),
    ],
)
def test_canonicalize(url: str, canonical: str) -> None:
    assert canonicalize(url) == canonical
    assert canonicalize(canonical) == canonical  # a canonical URL is its own canonical form


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/file", "scheme 'ftp'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("/relative/path", "no scheme"),
        ("example.com/a", "no scheme"),
        ("http://", "no host"),
        ("http://a..b/", "invalid host name"),
        ("http://exa mple.com/", "invalid host name"),
        ("http://1.2.3.256/", "invalid IPv4 address"),
        ("http://08.0.0.1/", "invalid IPv4 address"),
        ("http://news.2024/", "invalid IPv4 address"),
        ("http://[::1/", "Invalid IPv6"),
        ("http://example.com:99999/", "Port"),
        ("http://example.com:port/", "Port"),
    ],
)
def test_canonicalize_refuses(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid URL") as caught:
        canonicalize(url)
    assert message in str(caught.value)


def test_canonical_link_of_real_pages() -> None:
    en = (PAGES / "en_article.html").read_text(encoding="utf-8")
    ar = (PAGES / "ar_article.html").read_text(encoding="utf-8")
    assert (
        canonical_link(en, "https://www.harbourcourier.example/amp/12345")
        == "https://www.harbourcourier.example/news/local/2024/03/12/council-approves-flood-barrier"
    )
    assert canonical_link(ar, "https://alsahel.example/") == (
        "https://alsahel.example/ar/news/2024/05/desalination-plant-opens"
    )


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<link rel="canonical" href="/story?utm_source=rss#top">', "https://news.example/story"),
        ('<head><link rel="Canonical alternate" href="story-2"></head>', "https://news.example/section/story-2"),
        ('<base href="https://cdn.example/x/"><link rel="canonical" href="y">', "https://cdn.example/x/y"),
        ('<link rel="canonical" href="  https://OTHER.example:443/a  ">', "https://other.example/a"),
        ('<link rel="alternate" href="/amp"><link rel="canonical" href="/real">', "https://news.example/real"),
        (
            '<?xml version="1.0" encoding="iso-8859-1"?><html><link rel=canonical href=/x></html>',
            "https://news.example/x",
        ),
        ("<link rel=canonical>", None),
        ('<link rel="stylesheet" href="/site.css">', None),
        ('<link rel="canonical" href="javascript:alert(1)">', None),
        ('<link rel="canonical" href="mailto:desk@news.example">', None),
        ('<link rel="canonical" href="http://[::1">', None),
        ("", None),
        ("   ", None),
        ("<<<>>>", None),
        ("\x00\x00\x00", None),
        ("\ud800 lone surrogate", None),
        ("<div>" * 100_000, None),
        ("<!-- <link rel=canonical href=/commented> -->", None),
    ],
)
def test_canonical_link(html: str, expected: str | None) -> None:
    assert canonical_link(html, "https://news.example/section/page") == expected
