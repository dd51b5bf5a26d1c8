"""Publication times to UTC (docsieve/published.py)."""

import pytest

from docsieve.published import parse_published


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2015-07-21T08:00:00+03:00", "2015-07-21T05:00:00+00:00"),
        ("2015-07-21T05:00:00Z", "2015-07-21T05:00:00+00:00"),
        ("2015-07-21 02:51:58", "2015-07-21T02:51:58+00:00"),
        ("2015-07-21", "2015-07-21T00:00:00+00:00"),
        ("Tue, 21 Jul 2015 08:00:00 +0200", "2015-07-21T06:00:00+00:00"),
        ("1437465600", "2015-07-21T08:00:00+00:00"),
        ("٢٠١٥-٠٧-٢١", "2015-07-21T00:00:00+00:00"),
        ("yesterday", None),
        ("0001-01-01", None),
        ("9999-12-31T23:59:59-05:00", None),  # no UTC instant: a year past 9999
        ("0001-01-01T00:00:00+05:00", None),  # nor before year 1
        ("", None),
    ],
)
def test_published_is_parsed_into_a_utc_instant(given: str, expected: str | None) -> None:
    stamp = parse_published(given)
    assert (stamp.isoformat() if stamp else None) == expected
