#!/usr/bin/env python3
"""Fetch the evaluation and calibration text from a PyPI wheel, offline afterwards.

gensim 4.4.0's wheel carries two small text corpora among its test data (Wikipedia text is CC BY-SA):
  * a shortened English Wikipedia XML dump (about 100 real articles), and
  * lee_background.cor: 300 news articles, one per line.

This script downloads the wheel once with `pip download --no-deps` into a cache folder (reused when present),
reads both files straight out of the zip (nothing is installed), turns the wikitext into plain prose and writes

  data/wiki.eval.txt    evaluation articles (every EVAL_EVERY-th cleaned article)
  data/wiki.calib.txt   the other Wikipedia articles (for calibration experiments)
  data/lee.calib.txt    the 300 news articles
  data/MANIFEST.json    counts, characters, sha256 and the titles of each split

Records are separated by one blank line; a Wikipedia record starts with its title on a line of its own and
has no blank line inside (one paragraph per line). Usage: python tools/fetch_text.py [--out DIR] [--cache DIR]
"""
from __future__ import annotations

import argparse
import bz2
import glob
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
GENSIM_VERSION = "4.4.0"
WIKI_MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_MEMBER = "gensim/test/test_data/lee_background.cor"

# Article i (0-based, counted over the articles kept after cleaning) goes to eval when i % EVAL_EVERY == 0.
# With 3 the eval split holds ~1.0M characters (~250k tokens); with 4 it would fall under the 600k minimum.
EVAL_EVERY = 3
MIN_ARTICLE_CHARS = 1000  # cleaned articles shorter than this (stubs, disambiguation pages) are skipped
MIN_EVAL_CHARS = 600_000

# Sections that hold lists of sources and links rather than prose; dropped with their subsections.
DROP_SECTIONS = {
    "references", "external links", "see also", "further reading", "notes", "bibliography", "sources",
    "footnotes", "citations", "notes and references", "references and notes", "works cited", "links",
    "primary sources", "secondary sources", "selected bibliography", "gallery",
}
# Link prefixes whose links are not prose: media, categories, other wikis.
_NON_PROSE_LINK = re.compile(
    r"^\s*:?\s*(file|image|media|category|wikt|wiktionary|commons|wikisource|[a-z]{2,3}(-[a-z]+)?)\s*:", re.IGNORECASE)
# Tags whose whole content is dropped (not prose, or unrenderable as text).
_DROP_ELEMENTS = ("ref", "math", "gallery", "timeline", "imagemap", "score", "syntaxhighlight", "source",
                  "chem", "hiero", "graph", "references", "templatedata", "mapframe", "table")


@dataclass(frozen=True)
class Article:
    title: str
    text: str


# ----------------------------------------------------------------------------------------------------------
# wikitext -> plain text

def _remove_nested(text: str, open_tok: str, close_tok: str) -> str:
    """Remove every span open_tok ... close_tok, counting nesting; an unclosed span runs to the end."""
    out: list[str] = []
    depth = 0
    i = 0
    start = 0
    n = len(text)
    while i < n:
        if text.startswith(open_tok, i):
            if depth == 0:
                out.append(text[start:i])
            depth += 1
            i += len(open_tok)
        elif depth and text.startswith(close_tok, i):
            depth -= 1
            i += len(close_tok)
            if depth == 0:
                start = i
        else:
            i += 1
    if depth == 0:
        out.append(text[start:])
    return "".join(out)


def _remove_tables(text: str) -> str:
    """Drop wiki tables: lines from one starting with '{|' to its matching '|}' (tables nest)."""
    out: list[str] = []
    depth = 0
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("{|"):
            depth += 1
            continue
        if depth:
            if s.startswith("|}"):
                depth -= 1
            continue
        out.append(line)
    return "\n".join(out)


def _replace_links(text: str) -> str:
    """[[File:..]], [[Category:..]] and interwiki links vanish (captions may hold nested links);
    [[target|label]] -> label, [[target]] -> target."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        j = text.find("[[", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        # find the matching ]] counting nested [[ ]]
        depth = 0
        k = j
        while k < n:
            if text.startswith("[[", k):
                depth += 1
                k += 2
            elif text.startswith("]]", k):
                depth -= 1
                k += 2
                if depth == 0:
                    break
            else:
                k += 1
        inner = text[j + 2:k - 2] if depth == 0 else text[j + 2:]
        if depth == 0 and not _NON_PROSE_LINK.match(inner):
            inner = _replace_links(inner)  # a label may itself hold a link (rare)
            target, sep, label = inner.partition("|")
            if sep:
                out.append(label.strip() or re.sub(r"\s*\(.*?\)\s*$", "", target.split(":")[-1]).strip())
            else:
                out.append(target.lstrip(":").split("#")[0] if not target.startswith("#") else target[1:])
        i = k if depth == 0 else n
    return "".join(out)


_INNER_TEMPLATE = re.compile(r"\{\{([^{}]*)\}\}")
_ARG_SPLIT = re.compile(r"\|(?![^\[]*\]\])")  # a | that is not inside a [[link|label]]
_RANGE_WORDS = {"-": "–", "–": "–", "to": " to ", "to(-)": " to ", "and": " and ", "and(-)": " and ",
                "or": " or ", "x": " × ", "by": " by ", "+": " + "}


def _render_template(m: re.Match) -> str:
    """Text of the few inline templates that carry prose (numbers with units, foreign words); "" for the rest."""
    parts = [p.strip() for p in _ARG_SPLIT.split(m.group(1))]
    name = parts[0].lower().replace("_", " ")
    pos = [p for p in parts[1:] if "=" not in p]
    if name in ("convert", "cvt") and len(pos) >= 2:
        if len(pos) >= 4 and pos[1].lower() in _RANGE_WORDS:
            return f"{pos[0]}{_RANGE_WORDS[pos[1].lower()]}{pos[2]} {pos[3]}"
        return f"{pos[0]} {pos[1]}"
    if name in ("lang", "transl") and len(pos) >= 2:
        return pos[-1]
    if (name.startswith("lang-") or name in ("nowrap", "nobr", "sic", "small", "smaller", "em", "not a typo")) and pos:
        return pos[0]
    return ""


def _remove_templates(text: str) -> str:
    """Render or drop templates innermost first, then drop whatever nesting is left (e.g. single braces inside)."""
    while True:
        new = _INNER_TEMPLATE.sub(_render_template, text)
        if new == text:
            break
        text = new
    return _remove_nested(text, "{{", "}}")


_HEADING = re.compile(r"^(={1,6})\s*(.*?)\s*\1\s*$")
_COMMENT = re.compile(r"<!--.*?(-->|$)", re.DOTALL)
_SELF_CLOSING = re.compile(r"<\s*(ref|references|br|hr)\b[^>]*/\s*>", re.IGNORECASE)
_EXT_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+\s*([^\]]*)\]")
_BOLD_ITALIC = re.compile(r"'{2,5}")
_TAG = re.compile(r"</?\s*[a-zA-Z][a-zA-Z0-9]*\b[^<>]*?/?>")
_MAGIC = re.compile(r"__[A-Z]+__")
_LIST_MARK = re.compile(r"^[*#:;]+\s*")
_SPACES = re.compile(r"[ \t\u00a0\u2009\u200b]+")
_EMPTY_PARENS = re.compile(r"\(\s*[,;]?\s*\)")


def clean_wikitext(text: str) -> str:
    """Turn one article's wikitext (already XML-unescaped) into plain prose, one paragraph per line.

    Templates, tables, refs, comments, math, galleries, media/category/interwiki links and source-list sections
    (References, External links, See also, ...) go; [[a|b]] -> b, [[a]] -> a, [url text] -> text;
    ''italic''/'''bold''' marks and other HTML tags are stripped (their text kept); == Heading == -> Heading;
    list markers are stripped; HTML entities are unescaped; blank lines collapse.
    """
    t = text.replace("\r\n", "\n").replace("\r", "\n")
    t = _COMMENT.sub("", t)
    t = _SELF_CLOSING.sub("", t)
    for tag in _DROP_ELEMENTS:
        t = re.sub(rf"<\s*{tag}\b[^>]*>.*?(<\s*/\s*{tag}\s*>|$)", "", t, flags=re.DOTALL | re.IGNORECASE)
    t = _remove_templates(t)
    t = _remove_tables(t)
    t = _remove_nested(t, "{{", "}}")  # templates left unmatched by a removed table line
    t = _replace_links(t)
    t = _EXT_LINK.sub(lambda m: m.group(1), t)
    t = _BOLD_ITALIC.sub("", t)
    t = _TAG.sub("", t)
    t = _MAGIC.sub("", t)
    t = html.unescape(t)
    t = html.unescape(t)  # entities written double-escaped in the source (&amp;nbsp;)

    lines: list[tuple[bool, str]] = []  # (is_heading, text)
    drop_level = 0  # > 0 while inside a dropped section of that heading level
    for raw in t.split("\n"):
        line = _SPACES.sub(" ", raw).strip()
        m = _HEADING.match(line)
        if m:
            level, title = len(m.group(1)), m.group(2).strip()
            if drop_level and level > drop_level:
                continue
            drop_level = level if title.lower() in DROP_SECTIONS else 0
            if not drop_level and title:
                lines.append((True, title))
            continue
        if drop_level:
            continue
        line = _LIST_MARK.sub("", line)
        if line.startswith("|") or line.startswith("!"):  # stray table rows
            continue
        line = _EMPTY_PARENS.sub("", line)
        line = re.sub(r" +([,.;:])", r"\1", line)
        line = _SPACES.sub(" ", line).strip()
        if line:
            lines.append((False, line))
    # a heading left with nothing under it (its section was all tables/templates) is dropped
    kept: list[str] = []
    for k, (is_heading, line) in enumerate(lines):
        if is_heading and (k + 1 == len(lines) or lines[k + 1][0]):
            continue
        kept.append(line)
    return "\n".join(kept)


# ----------------------------------------------------------------------------------------------------------
# dump reading and splitting

def iter_pages(xml_bytes: bytes) -> Iterator[tuple[str, int, bool, str]]:
    """(title, namespace, is_redirect, wikitext) for each <page> of a MediaWiki XML export."""
    root = ET.fromstring(xml_bytes)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    for page in root.iter(f"{ns}page"):
        title = page.findtext(f"{ns}title") or ""
        namespace = int(page.findtext(f"{ns}ns") or 0)
        redirect = page.find(f"{ns}redirect") is not None
        text = ""
        rev = page.find(f"{ns}revision")
        if rev is not None:
            text = rev.findtext(f"{ns}text") or ""
        yield title, namespace, redirect, text


_DISAMBIG = re.compile(r"\{\{\s*(disambig\w*|dab|hndis|geodis|set index article|surname|given name)\s*[|}]",
                       re.IGNORECASE)


def is_disambiguation(title: str, text: str) -> bool:
    """Disambiguation and name-list pages are link lists, not prose."""
    return "(disambiguation)" in title.lower() or _DISAMBIG.search(text) is not None


def wiki_articles(xml_bytes: bytes, min_chars: int = MIN_ARTICLE_CHARS) -> list[Article]:
    """Cleaned main-namespace articles in dump order, without redirects, disambiguation pages and articles
    under min_chars."""
    out: list[Article] = []
    for title, namespace, redirect, text in iter_pages(xml_bytes):
        if namespace != 0 or redirect or re.match(r"\s*#redirect", text, re.IGNORECASE):
            continue
        if is_disambiguation(title, text):
            continue
        body = clean_wikitext(text)
        if len(body) < min_chars:
            continue
        out.append(Article(title, body))
    return out


def split_articles(articles: Iterable[Article], every: int = EVAL_EVERY) -> tuple[list[Article], list[Article]]:
    """(eval, calib): article i goes to eval when i % every == 0, else to calib."""
    ev: list[Article] = []
    ca: list[Article] = []
    for i, a in enumerate(articles):
        (ev if i % every == 0 else ca).append(a)
    return ev, ca


def lee_articles(raw: bytes) -> list[str]:
    """The news articles of lee_background.cor, one per non-empty line, whitespace-normalised."""
    text = raw.decode("utf-8", errors="replace")
    return [_SPACES.sub(" ", line).strip() for line in text.splitlines() if line.strip()]


def format_wiki(articles: Iterable[Article]) -> str:
    return "\n\n".join(f"{a.title}\n{a.text}" for a in articles) + "\n"


def format_plain(records: Iterable[str]) -> str:
    return "\n\n".join(records) + "\n"


# ----------------------------------------------------------------------------------------------------------
# fetching

def fetch_wheel(cache: Path, version: str = GENSIM_VERSION) -> Path:
    """The gensim wheel in cache, downloaded with `pip download --no-deps` when none is there."""
    cache.mkdir(parents=True, exist_ok=True)

    def found() -> list[str]:
        return sorted(glob.glob(str(cache / f"gensim-{version}-*.whl")))

    have = found()
    if not have:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", f"gensim=={version}", "-d", str(cache)]
        print(f"downloading gensim {version} wheel into {cache} ...", file=sys.stderr)
        r = subprocess.run(cmd)
        if r.returncode != 0:
            raise SystemExit(f"error: `{' '.join(cmd)}` failed (exit {r.returncode}); check network access to PyPI")
        have = found()
        if not have:
            raise SystemExit(f"error: pip download left no gensim-{version} wheel in {cache}")
    return Path(have[0])


def _write_if_changed(path: Path, data: str) -> None:
    b = data.encode("utf-8")
    if path.exists() and path.read_bytes() == b:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b)
    os.replace(tmp, path)


def _sha256(data: str) -> str:
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def build(wheel: Path, out: Path, every: int = EVAL_EVERY) -> dict:
    """Read the wheel, write the three text files and MANIFEST.json into out; return the manifest."""
    with zipfile.ZipFile(wheel) as z:
        xml_bytes = bz2.decompress(z.read(WIKI_MEMBER))
        lee_raw = z.read(LEE_MEMBER)
    articles = wiki_articles(xml_bytes)
    ev, ca = split_articles(articles, every)
    lee = lee_articles(lee_raw)

    files = {
        "wiki.eval.txt": (format_wiki(ev), [a.title for a in ev]),
        "wiki.calib.txt": (format_wiki(ca), [a.title for a in ca]),
        "lee.calib.txt": (format_plain(lee), None),
    }
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {
        "source": {"package": f"gensim=={GENSIM_VERSION}", "wheel": wheel.name,
                   "wiki_member": WIKI_MEMBER, "lee_member": LEE_MEMBER},
        "split_rule": f"cleaned Wikipedia article i (0-based, dump order, redirects, disambiguation pages and "
                      f"articles under {MIN_ARTICLE_CHARS} characters skipped) goes to eval when i % {every} == 0, "
                      "else calib",
        "files": {},
    }
    for name, (text, titles) in files.items():
        _write_if_changed(out / name, text)
        entry: dict = {"articles": len(titles) if titles is not None else len(lee),
                       "chars": len(text), "bytes": len(text.encode("utf-8")), "sha256": _sha256(text)}
        if titles is not None:
            entry["titles"] = titles
        manifest["files"][name] = entry
    _write_if_changed(out / "MANIFEST.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "data",
                    help="output folder (default: data/ at the repo root)")
    ap.add_argument("--cache", type=Path, default=REPO_ROOT / ".cache" / "fetch_text",
                    help="where the downloaded wheel is kept (default: .cache/fetch_text/ at the repo root)")
    args = ap.parse_args(argv)

    wheel = fetch_wheel(args.cache)
    m = build(wheel, args.out)
    for name, e in m["files"].items():
        print(f"{args.out / name}: {e['articles']} articles, {e['chars']:,} chars (~{e['chars'] // 4:,} tokens), "
              f"sha256 {e['sha256'][:12]}")
    ev_chars = m["files"]["wiki.eval.txt"]["chars"]
    if ev_chars < MIN_EVAL_CHARS:
        print(f"warning: eval split has only {ev_chars:,} characters (< {MIN_EVAL_CHARS:,})", file=sys.stderr)
    print(f"{args.out / 'MANIFEST.json'}: {m['split_rule']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
