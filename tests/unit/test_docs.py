# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hand-written docs: every page is reachable from the README, every relative link and every file a config
comment names exists, and the guide's DNS records are the ones dms.mailserver.dns prints by default."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.dms.mailserver.plugins.filter.dns import dms_dns_records

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r'\]\(([^)#\s]+)(?:#[^)]*)?\)')


def links(page):
    """The relative links of a Markdown page, as paths."""
    out = []
    for target in LINK.findall(page.read_text()):
        if '://' in target or target.startswith('mailto:'):
            continue
        out.append((page.parent / target).resolve())
    return out


def test_every_relative_link_of_the_readme_and_docs_exists():
    pages = [ROOT / 'README.md'] + sorted(ROOT.glob('docs/**/*.md'))
    broken = ['%s -> %s' % (p.relative_to(ROOT), t) for p in pages for t in links(p) if not t.exists()]
    assert broken == []


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [ROOT / 'README.md']
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != '.md' or not page.exists():
            continue
        seen.add(page)
        todo.extend(links(page))
    unreachable = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob('docs/**/*.md') if p.resolve() not in seen)
    assert unreachable == []


def test_the_readme_links_the_guide():
    assert (ROOT / 'docs' / 'guide-zero-to-mail.md').resolve() in links(ROOT / 'README.md')


def test_files_named_in_config_comments_exist():
    for config in ('.ansible-lint', 'galaxy.yml'):
        text = re.sub(r'\S+://\S+', '', (ROOT / config).read_text())
        named = re.findall(r'[\w./*-]+\.(?:md|yml|txt|sh)\b', text)
        missing = [n for n in named if not list(ROOT.glob(n))]
        assert missing == [], config


def test_the_guides_records_are_what_the_dns_playbook_prints():
    dns = dms_dns_records([{'host': 'mail', 'hostname': 'mail.example.com', 'domains': ['example.com'],
                            'ipv4': ['192.0.2.1'], 'addresses': ['postmaster@example.com']}])
    printed = dict((r['purpose'], r['value']) for r in dns['records'])
    guide = (ROOT / 'docs' / 'guide-zero-to-mail.md').read_text()
    rows = dict(re.findall(r'^\| `([^`]+)` \| TXT \| `([^`]+)`', guide, re.M))
    assert rows['example.com'] == printed['spf']
    assert rows['_dmarc.example.com'] == printed['dmarc']


MODULE_GUIDES = sorted(ROOT.glob('docs/modules/*.md'))


@pytest.mark.parametrize('guide', MODULE_GUIDES, ids=[g.stem for g in MODULE_GUIDES])
def test_module_guides_do_not_copy_the_option_and_return_tables(guide):
    """The reference is generated from DOCUMENTATION and RETURN (make docs); a guide's table whose rows are the
    module's options or return values one by one would be a second copy that drifts."""
    module = importlib.import_module('ansible_collections.dms.mailserver.plugins.modules.%s' % guide.stem)
    names = set(yaml.safe_load(module.DOCUMENTATION)['options']) | set(yaml.safe_load(module.RETURN))
    cells = re.findall(r'^\| ([^|]+?) \|', guide.read_text(), re.M)
    copied = [c for c in cells if re.fullmatch(r'`(\w+)`(?: \(.*\))?', c) and c.split('`')[1] in names]
    assert copied == []
