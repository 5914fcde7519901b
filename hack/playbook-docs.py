"""Write one reStructuredText page per playbook of playbooks/ for the docs site (hack/docs.sh).

antsibull-docs documents modules, roles and filters, not playbooks. A playbook's page is its header comment (what
it does, its variables), the command that runs it, and its plays, so the page says what the file says.

Usage: python hack/playbook-docs.py COLLECTION_ROOT DEST_DIR
Writes DEST_DIR/<name>.rst for each playbooks/<name>.yml and DEST_DIR/index.rst.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml


def header(text):
    """The comment lines at the top of a playbook (after ---), without the leading '# '."""
    out = []
    for line in text.splitlines():
        if line.strip() == '---' and not out:
            continue
        if not line.startswith('#'):
            break
        out.append(line[2:] if line.startswith('# ') else line[1:])
    return out


def literal(lines):
    return ['::', ''] + ['   ' + line if line else '' for line in lines] + ['']


def render(path):
    text = path.read_text()
    name = 'dms.mailserver.%s' % path.stem
    title = '%s playbook' % name
    lines = [title, '=' * len(title), '',
             'Run it with ``ansible-playbook -i inventory.yml %s``. The guide to the playbooks, with example '
             'inventories, is :doc:`/guides/docs/playbooks`.' % name, '',
             'What the file says', '-' * 18, ''] + literal(header(text) or ['(no header comment)'])
    plays = []
    for play in yaml.safe_load(text) or []:
        if 'ansible.builtin.import_playbook' in play:
            plays.append('%s: imports %s' % (play.get('name', ''), play['ansible.builtin.import_playbook']))
        else:
            plays.append('%s (hosts: %s)' % (play.get('name', ''), play.get('hosts', '')))
    lines += ['Its plays, in order', '-' * 19, ''] + literal(plays)
    return '\n'.join(lines)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__.rsplit('\n\n', maxsplit=1)[-1] + '\n')
        return 2
    root, dest = Path(argv[1]), Path(argv[2])
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for path in sorted((root / 'playbooks').glob('*.yml')):
        (dest / ('%s.rst' % path.stem)).write_text(render(path))
        names.append(path.stem)
    index = ['Playbooks', '=========', '', '.. toctree::', '   :maxdepth: 1', ''] + ['   %s' % n for n in names]
    (dest / 'index.rst').write_text('\n'.join(index) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
