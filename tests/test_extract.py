import time

import pytest

from docsieve.extract import extract
from docsieve.models import Document, Format, RawDocument, Rejection
from tests.conftest import REPO, fixture_text


def doc(body: str, **kw) -> Document:
    result = extract(RawDocument(source="s", body=body, **kw))
    assert isinstance(result, Document), result
    return result


def test_seed_article_shape() -> None:
    seed = (REPO / "seeds" / "000_3b0ecb07abc01b42.txt").read_text(encoding="utf-8")
    d = doc(seed)
    assert d.images == (seed.splitlines()[0][4:-1],)
    assert "![" not in d.text and "](" not in d.text
    # No headline line in this article: the title is its first sentence.
    assert d.title.startswith("زار وفد من حركة المقاومة الإسلامية")
    assert d.text.startswith("زار وفد")
    assert d.text.splitlines() == [line for line in seed.splitlines()[1:] if line.strip()]


def test_headline_line_becomes_title() -> None:
    d = doc(fixture_text("ar_near_a.txt"))
    lines = fixture_text("ar_near_a.txt").splitlines()
    assert d.title == lines[1]
    assert not d.text.startswith(lines[1])


def test_markdown_images_links_headings_and_whitespace() -> None:
    body = (
        "![](http://img/1.jpg)\n# The   Headline\n\nFirst   paragraph with a [link](http://x.y/z) inside.\n\n"
        '![caption](http://img/2.png "t")\nSecond\tparagraph.  \n![](http://img/1.jpg)'
    )
    d = doc(body)
    assert d.title == "The Headline"
    assert d.images == ("http://img/1.jpg", "http://img/2.png")
    assert d.text == "First paragraph with a link inside.\nSecond paragraph."


def test_title_from_first_sentence_when_no_headline() -> None:
    d = doc("هذه جملة أولى. وهذه\u00a0\u00a0جملة ثانية في الفقرة نفسها.\nفقرة أخرى.")
    assert d.title == "هذه جملة أولى."


def test_given_title_is_not_repeated_in_text() -> None:
    d = doc("Big News\nThe body.", title="Big News")
    assert d.title == "Big News" and d.text == "The body."


def test_a_footer_linking_back_to_the_article_is_not_text() -> None:
    # alweeam ends each article so: "link to the story in al-Weeam: <title>", on its own line or after the last
    # sentence; the title may come with HTML entities where the footer has the characters.
    title = "خادم الحرمين يهنئ ملك المغرب"
    body = "بعث خادم الحرمين برقية تهنئة.\nوأشاد بتميز العلاقات."
    assert doc(f"{body}\nرابط الخبر بصحيفة الوئام: {title}", title=title).text == body
    assert doc(f"{body} رابط الخبر بصحيفة الوئام: {title} ", title=title).text == body
    quoted = "توزيع &#8220;موسوعة خطب الجمعة&#8221; على الخطباء"
    assert doc(f"{body}\nرابط الخبر: توزيع “موسوعة خطب الجمعة” على الخطباء", title=quoted).text == body
    assert doc(f"{body}\nRead more: Big News", title="Big News").text == body


def test_a_title_written_in_entities_or_with_odd_spacing_is_still_the_title() -> None:
    encoded = "".join(f"&#{ord(c)};" for c in "مرحبا بكم")  # every letter an entity: 9 characters for 1
    assert doc("مرحبا بكم\nالنص.\nرابط الخبر: مرحبا بكم", title=encoded).text == "النص."
    padded = "Big\n" + " " * 40 + "News"
    assert doc("Big News\nThe body.\nRead more: Big News", title=padded).text == "The body."


def test_text_that_ends_with_the_title_is_kept_unless_a_link_label_comes_before_it() -> None:
    title = "الحكومة تخفض الإنفاق"
    for last in (
        f"وقال الوزير في كلمته أمام الحضور في افتتاح المؤتمر اليوم: {title}",  # a sentence, not a label
        f"وقال الوزير: {title}",  # a short quote of the headline: text
        f"فقرة عن {title}",  # no label
        f"We thank all readers Read more: {title}",  # an unpunctuated sentence before the label: kept whole
        f"رابط الخبر بصحيفة الوئام اليوم على موقعها الإلكتروني: {title}",  # 7 words: too long for a label
    ):
        assert doc(f"فقرة أولى.\n{last}", title=title).text == f"فقرة أولى.\n{last}"
    assert doc(f"فقرة أولى.\nرابط الخبر بصحيفة الوئام على موقعها: {title}", title=title).text == "فقرة أولى."  # 6
    assert (
        doc("Para one.\nThe end. Read more : Tom &amp; Jerry", title="Tom & Jerry\u200f").text == "Para one.\nThe end."
    )
    only = extract(RawDocument(source="s", body=f"رابط الخبر بصحيفة الوئام: {title}", title=title))
    assert isinstance(only, Rejection) and "a link back to it only" in only.reason  # a gallery: title and link


def test_empty_and_image_only_are_rejected() -> None:
    for body in ("", "   \n\n", "![](http://img/only.jpg)\n"):
        result = extract(RawDocument(source="s", body=body))
        assert isinstance(result, Rejection) and "no article text" in result.reason


def test_html_article_main_text() -> None:
    page = """<html><head><title>Site | Rosneft faces loan claim</title>
    <meta property="og:image" content="http://img/lead.jpg"></head><body>
    <nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>
    <article><h1>Rosneft faces loan claim</h1>
    <p>The owners of embattled Russian oil giant Yukos are to ask the buyer of its former production unit
    to pay back a $900m loan taken out before the sale.</p>
    <p>State-owned Rosneft bought the Yugansk unit for $9.3bn in a sale forced by Russia to part settle a
    $27.5bn tax claim against Yukos, lawyers for the company said on Tuesday.</p></article>
    <footer>Copyright 2025 Example News. All rights reserved. Cookie policy.</footer></body></html>"""
    d = doc(page, format=Format.HTML)
    assert "Yugansk unit" in d.text and "Cookie policy" not in d.text and "Home" not in d.text
    assert "Rosneft faces loan claim" in d.title
    assert d.images == ("http://img/lead.jpg",)


def test_html_without_article_is_rejected() -> None:
    result = extract(RawDocument(source="s", body="<html><body><nav>Home</nav></body></html>", format=Format.HTML))
    assert isinstance(result, Rejection) and "no article text" in result.reason


def test_unicode_whitespace_is_folded() -> None:
    d = doc("Title line\nA\u00a0\u00a0paragraph\u2003with  odd\tspacing.\u200f")
    assert d.text == "A paragraph with odd spacing.\u200f"


def test_a_question_headline_is_kept_whole() -> None:
    headline = "الذهب عند أقل مستوى في 5 سنوات.. هل تغيرت عقيدة المستثمرين بشأن الملاذات الآمنة؟"
    body = "بالنسبة إلى ديانا ميتوفيتش، مديرة صندوق استثماري، فإن الذهب لم يعد ملاذا آمنا.\nفقرة ثانية."
    d = doc(f"![](http://img/1.jpg)\n{headline}\n{body}")
    assert d.title == headline and d.text == body
    english = doc("Is gold still a safe haven?\nInvestors are leaving gold for the dollar.\nMore text.")
    assert english.title == "Is gold still a safe haven?" and english.text.startswith("Investors")


def test_the_first_sentence_is_not_cut_at_a_pause_of_dots() -> None:
    d = doc("وسط التقشف الصارم.. الحكومة تخفض الإنفاق العام بنسبة كبيرة. وجملة ثانية.\nفقرة أخرى طويلة بما يكفي.")
    assert d.title == "وسط التقشف الصارم.. الحكومة تخفض الإنفاق العام بنسبة كبيرة."
    assert doc("Prices rose... then fell. Second sentence here.\nMore.").title.startswith("Prices rose... then fell.")


def flat_divs(count: int) -> str:
    """Markup whose extraction cost grows with its elements: 10 MB of it took three minutes."""
    return "<html><body>" + "<div>word and more words</div>" * count + "</body></html>"


@pytest.mark.slow
def test_html_extraction_is_bounded_in_size_and_time() -> None:
    from docsieve.extract import HtmlLimits

    page = RawDocument(source="big.html", body=flat_divs(200_000), format=Format.HTML)  # 6 MB
    too_large = extract(page, HtmlLimits(max_chars=1_000_000, timeout=60))
    assert isinstance(too_large, Rejection)
    assert too_large.reason.startswith("HTML page too large to extract: 6,000,026 characters, the limit is 1,000,000")
    started = time.monotonic()
    too_slow = extract(page, HtmlLimits(max_chars=10_000_000, timeout=0.5))
    took = time.monotonic() - started
    assert isinstance(too_slow, Rejection) and "HTML extraction took more than 0.5 s" in too_slow.reason
    assert took < 5, took  # unbounded, this page takes about 20 s here
    # The thread that was interrupted extracts the next page as usual, and nothing fires later.
    d = doc(fixture_text("../fixtures/pages/en_article.html"), format=Format.HTML)
    assert d.text
    time.sleep(0.6)
    assert doc(fixture_text("../fixtures/pages/en_article.html"), format=Format.HTML).text == d.text


def test_the_deadline_interrupts_extraction_on_any_thread() -> None:
    """``ingest`` extracts on its preparing thread, where no signal can reach."""
    from concurrent.futures import ThreadPoolExecutor

    from docsieve.extract import HtmlLimits

    page = RawDocument(source="big.html", body=flat_divs(200_000), format=Format.HTML)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: extract(page, HtmlLimits(max_chars=10_000_000, timeout=0.3)), range(2)))
    assert all(isinstance(r, Rejection) and "took more than 0.3 s" in r.reason for r in results)
