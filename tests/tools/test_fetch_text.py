"""tools/fetch_text.py: wikitext cleaning on hand-written snippets, and the split on a tiny synthetic dump."""
from __future__ import annotations

import bz2
import hashlib
import json
import zipfile
from pathlib import Path
from types import ModuleType
from xml.sax.saxutils import escape

import pytest


@pytest.fixture(scope="module")
def ft(load_tool) -> ModuleType:
    return load_tool("fetch_text")


# ---------------------------------------------------------------------------------------------- cleaning

def test_links_bold_italic(ft: ModuleType) -> None:
    src = "'''Anarchism''' is a [[political philosophy]] of [[stateless society|stateless societies]] and ''[[book]]s''."
    assert ft.clean_wikitext(src) == "Anarchism is a political philosophy of stateless societies and books."


def test_templates_nested_and_refs_and_comments(ft: ModuleType) -> None:
    src = (
        "{{Infobox person\n| name = X\n| image = {{nowrap|a}} [[File:X.jpg]]\n}}\n"
        "X was born in 1900.<ref name=\"a\">{{cite book|title=T}} Some source.</ref> "
        "He died<!-- hidden\nnote --> in 1950.<ref name=\"a\"/>\n"
    )
    assert ft.clean_wikitext(src) == "X was born in 1900. He died in 1950."


def test_inline_templates_rendered(ft: ModuleType) -> None:
    src = ("It weighs {{convert|60|and|80|kg|abbr=on}}, is {{convert|2.2|m|ft}} long, "
           "called {{lang|fr|le fourmilier}} or {{lang-de|Erdferkel}}.{{citation needed|date=May 2010}}")
    assert ft.clean_wikitext(src) == ("It weighs 60 and 80 kg, is 2.2 m long, called le fourmilier or Erdferkel.")


def test_tables_files_categories_interwiki_dropped(ft: ModuleType) -> None:
    src = (
        "Intro line.\n"
        "{| class=\"wikitable\"\n|-\n! Year !! Value\n|-\n| 1999 || {{n/a}}\n{|\n| nested\n|}\n|}\n"
        "[[File:Map.png|thumb|A map of the [[Nile]] valley.]]\n"
        "[[Image:Photo.jpg|200px]]The river flows north.\n"
        "[[Category:Rivers]]\n[[de:Nil]]\n"
    )
    assert ft.clean_wikitext(src) == "Intro line.\nThe river flows north."


def test_headings_lists_entities_blank_lines(ft: ModuleType) -> None:
    src = (
        "First paragraph &amp; more.\n\n\n"
        "== History ==\n"
        "Text&nbsp;here with a [http://example.org link text] and [http://bare.example.org].\n\n"
        "=== Early years ===\n"
        "* item one\n# item two\n"
        "==Empty section==\n"
        "{{main|Something}}\n"
        "== See also ==\n* [[Other]]\n=== Sub of see also ===\nstill dropped\n"
        "== References ==\n{{reflist}}\n"
        "== Legacy ==\n"
        "Last words.__NOTOC__\n"
    )
    assert ft.clean_wikitext(src) == (
        "First paragraph & more.\n"
        "History\n"
        "Text here with a link text and.\n"
        "Early years\n"
        "item one\n"
        "item two\n"
        "Legacy\n"
        "Last words."
    )


def test_html_tags_stripped_and_math_dropped(ft: ModuleType) -> None:
    src = "E = mc<sup>2</sup> holds<br/> and <math>x^2</math> is gone; H<sub>2</sub>O is <span style=\"x\">water</span>."
    assert ft.clean_wikitext(src) == "E = mc2 holds and is gone; H2O is water."


def test_unbalanced_template_runs_to_end(ft: ModuleType) -> None:
    assert ft.clean_wikitext("Kept text.\n{{broken template\nnever closed") == "Kept text."


# ---------------------------------------------------------------------------------------------- dump and split

def _page(title: str, text: str, ns: int = 0, redirect: str | None = None) -> str:
    red = f'<redirect title="{escape(redirect)}" />' if redirect else ""
    return (f"<page><title>{escape(title)}</title><ns>{ns}</ns><id>1</id>{red}<revision><id>2</id>"
            f"<text xml:space=\"preserve\">{escape(text)}</text></revision></page>")


def _tiny_dump() -> bytes:
    body = "Sentence number {k} about [[topic|the topic]] goes here.<ref>{{{{cite web|url=x}}}}</ref> " * 40
    pages = [_page("Redirected", "#REDIRECT [[Article 0]]", redirect="Article 0")]
    for k in range(10):
        pages.append(_page(f"Article {k}", "{{Infobox}}\n'''Article''' " + body.format(k=k)))
        if k == 4:
            pages.append(_page("Stub", "Too short."))
            pages.append(_page("Talk:Article 1", body.format(k=99), ns=1))
            pages.append(_page("Thing (disambiguation)", body.format(k=98)))
    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10"><siteinfo>'
           "<sitename>Wikipedia</sitename></siteinfo>" + "".join(pages) + "</mediawiki>")
    return xml.encode("utf-8")


def test_wiki_articles_skip_redirects_stubs_other_namespaces(ft: ModuleType) -> None:
    arts = ft.wiki_articles(_tiny_dump())
    assert [a.title for a in arts] == [f"Article {k}" for k in range(10)]
    assert arts[3].text.startswith("Article Sentence number 3 about the topic goes here. Sentence number 3")
    assert "{" not in arts[3].text and "[" not in arts[3].text and "<" not in arts[3].text


def test_split_deterministic_and_complete(ft: ModuleType) -> None:
    arts = ft.wiki_articles(_tiny_dump())
    ev, ca = ft.split_articles(arts, every=3)
    assert [a.title for a in ev] == ["Article 0", "Article 3", "Article 6", "Article 9"]
    assert [a.title for a in ca] == ["Article 1", "Article 2", "Article 4", "Article 5", "Article 7", "Article 8"]
    ev2, ca2 = ft.split_articles(ft.wiki_articles(_tiny_dump()), every=3)
    assert ev2 == ev and ca2 == ca


def test_build_from_fake_wheel(ft: ModuleType, tmp_path: Path) -> None:
    wheel = tmp_path / "gensim-4.4.0-cp311-cp311-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(ft.WIKI_MEMBER, bz2.compress(_tiny_dump()))
        z.writestr(ft.LEE_MEMBER, "First  news story.\nSecond story here.\n\nThird.\n")
    out = tmp_path / "data"
    m1 = ft.build(wheel, out, every=3)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    m2 = ft.build(wheel, out, every=3)  # idempotent: same manifest, same bytes
    assert m1 == m2 and files == {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(files) == ["MANIFEST.json", "lee.calib.txt", "wiki.calib.txt", "wiki.eval.txt"]

    assert (out / "lee.calib.txt").read_text() == "First news story.\n\nSecond story here.\n\nThird.\n"
    records = (out / "wiki.eval.txt").read_text().rstrip("\n").split("\n\n")
    assert [r.split("\n", 1)[0] for r in records] == ["Article 0", "Article 3", "Article 6", "Article 9"]
    assert all(r.split("\n", 1)[1].startswith("Article Sentence number") for r in records)

    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["files"]["wiki.eval.txt"]["titles"] == ["Article 0", "Article 3", "Article 6", "Article 9"]
    assert manifest["files"]["wiki.calib.txt"]["articles"] == 6
    assert manifest["files"]["lee.calib.txt"]["articles"] == 3
    for name in ("wiki.eval.txt", "wiki.calib.txt", "lee.calib.txt"):
        assert manifest["files"][name]["sha256"] == hashlib.sha256(files[name]).hexdigest()
        assert manifest["files"][name]["chars"] == len(files[name].decode("utf-8"))


def test_fetch_wheel_reuses_cached(ft: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = tmp_path / f"gensim-{ft.GENSIM_VERSION}-cp311-cp311-manylinux_x86_64.whl"
    cached.write_bytes(b"x")

    def no_download(*a: object, **k: object) -> None:
        raise AssertionError("pip must not run when the wheel is cached")

    monkeypatch.setattr(ft.subprocess, "run", no_download)
    assert ft.fetch_wheel(tmp_path) == cached
