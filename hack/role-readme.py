"""Render a role's README.md from its meta/argument_specs.yml, so the two stay in step.

Usage: python hack/role-readme.py roles/<name>            # print
       python hack/role-readme.py roles/<name> --write    # write roles/<name>/README.md
The unit test tests/unit/test_role_readmes.py fails when a committed README differs from this output.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

_MARKUP = re.compile(r'([OVCMIBE]|RV)\(([^)]*)\)')


def plain(text):
    """Ansible doc markup to Markdown: O(x)/V(x)/C(x) -> `x`, M(x) -> `x`, I(x) -> *x*, B(x) -> **x**."""
    def sub(match):
        kind, value = match.groups()
        value = value.split('#')[0] if kind == 'O' and '#' in value else value
        if kind == 'I':
            return '*%s*' % value
        if kind == 'B':
            return '**%s**' % value
        return '`%s`' % value
    return _MARKUP.sub(sub, text)


def lines_of(description):
    if description is None:
        return []
    if isinstance(description, str):
        return [description]
    return list(description)


def render(role_dir):
    role_dir = Path(role_dir)
    specs = yaml.safe_load((role_dir / 'meta' / 'argument_specs.yml').read_text())['argument_specs']
    name = role_dir.name
    out = ['<!-- Generated from meta/argument_specs.yml by hack/role-readme.py; do not edit by hand. -->', '']
    main = specs['main']
    out.append('# dms.mailserver.%s' % name)
    out.append('')
    out.append(plain(main['short_description']) + '.')
    out.append('')
    for para in lines_of(main.get('description')):
        out.append(plain(para.strip()))
        out.append('')
    out.append('## Variables')
    out.append('')
    out.append('| variable | type | default | description |')
    out.append('|---|---|---|---|')
    for option, spec in sorted(main.get('options', {}).items()):
        kind = spec.get('type', 'str')
        if spec.get('elements'):
            kind = '%s of %s' % (kind, spec['elements'])
        if spec.get('choices'):
            kind += ' (%s)' % ', '.join('`%s`' % (c if c != '' else '""') for c in spec['choices'])
        if spec.get('required'):
            default = '**required**'
        elif 'default' in spec:
            default = '`%s`' % (yaml.safe_dump(spec['default'], default_flow_style=True, width=10000)
                                .strip().replace('\n...', '').replace('|', '\\|'))
        else:
            default = ''
        text = ' '.join(plain(' '.join(p.split())) for p in lines_of(spec.get('description')))
        out.append('| `%s` | %s | %s | %s |' % (option, kind, default, text.replace('|', '\\|')))
    out.append('')
    return '\n'.join(out)


def main():
    role_dir = sys.argv[1]
    text = render(role_dir)
    if '--write' in sys.argv[2:]:
        (Path(role_dir) / 'README.md').write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == '__main__':
    main()
