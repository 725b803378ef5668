"""Every relative link in README.md and docs/*.md leads somewhere inside the
repository: the file exists and, for ``#anchor``, a heading of that page has
that anchor (GitHub's rule: lowercase, punctuation dropped but ``-`` and
``_``, each space a ``-``, ``-1``, ``-2`` … after repeated headings)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]

FENCE = re.compile(r'^ *(```|~~~).*?^ *\1', re.M | re.S)
INLINE_CODE = re.compile(r'`[^`\n]*`')
LINK = re.compile(r'\[[^\]\n]*\]\(<?([^)\s>]+)>?(?:\s+"[^"]*")?\)')
HEADING = re.compile(r'^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$', re.M)
SCHEME = re.compile(r'[a-zA-Z][a-zA-Z0-9+.-]*:')


def slug(heading: str) -> str:
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # link → text
    text = text.strip().lower()
    return ''.join(c for c in text if c.isalnum() or c in ' -_').replace(
        ' ', '-')


def anchors(page: Path) -> set:
    seen, out = {}, set()
    for heading in HEADING.findall(FENCE.sub('', page.read_text())):
        s = slug(heading)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f'{s}-{n}')
    return out


def broken_links(page: Path, root: Path = ROOT) -> list:
    """``(target, why)`` for each relative link of ``page`` that leads
    nowhere (code blocks and code spans hold no links)."""
    text = INLINE_CODE.sub('', FENCE.sub('', page.read_text()))
    bad = []
    for target in LINK.findall(text):
        if SCHEME.match(target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition('#')
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(root.resolve()):
            bad.append((target, 'outside the repository'))
        elif not dest.exists():
            bad.append((target, 'no such file'))
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            bad.append((target, f'no heading #{anchor} in {dest.name}'))
    return bad


def test_slug_follows_github():
    assert slug('Machine-code figures, not GPU time') == \
        'machine-code-figures-not-gpu-time'
    assert slug('Does deep training help a detector?') == \
        'does-deep-training-help-a-detector'
    assert slug('`make demo`: the λ rule & CI') == 'make-demo-the-λ-rule--ci'
    assert slug('Results: the [base](x.md) recipe') == \
        'results-the-base-recipe'


def test_the_checker_finds_broken_links(tmp_path):
    (tmp_path / 'a.md').write_text('# Top\n\n## Same\n\n## Same\n')
    page = tmp_path / 'b.md'
    page.write_text(
        '[ok](a.md#top) [ok](a.md#same-1) [ok](#here) [web](https://x.y/z)\n'
        '# Here\n'
        '[gone](c.md) [no anchor](a.md#nothing) [up](../elsewhere.md)\n'
        '`[code](c.md)`\n```\n[fenced](c.md)\n```\n')
    assert broken_links(page, tmp_path) == [
        ('c.md', 'no such file'),
        ('a.md#nothing', 'no heading #nothing in a.md'),
        ('../elsewhere.md', 'outside the repository')]


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []
