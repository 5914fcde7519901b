# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""hack/stage.py, the mirror hack/lib.sh stages the work tree with (no rsync needed)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def stage(src, dst):
    proc = subprocess.run([sys.executable, str(ROOT / 'hack' / 'stage.py'), str(src), str(dst)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def snapshot(base):
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, base)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ('link', os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ('dir', st.st_mode)
            else:
                out[rel] = ('file', st.st_mode, st.st_mtime_ns, Path(path).read_bytes())
    return out


def tree(base, files):
    for rel, content in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def test_mirror_copies_files_modes_times_and_links_and_skips_the_excluded(tmp_path):
    src, dst = tmp_path / 'src', tmp_path / 'dst'
    tree(src, {'README.md': 'r\n', 'hack/run.sh': '#!/bin/sh\n', 'plugins/x.py': 'x = 1\n',
               'tests/output/junk': 'j', 'tests/unit/output/kept': 'k', '.git/HEAD': 'h', '.venv/bin/python': 'p',
               '.build/x': 'b', 'demo-output/credentials/a': 's', 'plugins/__pycache__/x.pyc': 'c',
               'tests/.pytest_cache/v': 'v', '.hypothesis/e': 'e'})
    (src / 'hack/run.sh').chmod(0o755)
    os.symlink('../README.md', str(src / 'hack' / 'readme-link'))
    stage(src, dst)
    assert snapshot(dst) == dict((k, v) for k, v in snapshot(src).items()
                                 if not k.startswith(('tests/output', '.git', '.venv', '.build', 'demo-output',
                                                      '.hypothesis'))
                                 and '__pycache__' not in k and '.pytest_cache' not in k)
    assert (dst / 'tests/unit/output/kept').exists()   # only the top-level tests/output is excluded
    assert os.readlink(str(dst / 'hack' / 'readme-link')) == '../README.md'
    assert os.stat(str(dst / 'hack/run.sh')).st_mode & 0o777 == 0o755


def test_a_second_run_updates_removes_and_keeps_the_destinations_own_excluded_files(tmp_path):
    src, dst = tmp_path / 'src', tmp_path / 'dst'
    tree(src, {'a.txt': 'one\n', 'gone/b.txt': 'b\n', 'same.txt': 's\n', 'tests/unit/t.py': 't\n'})
    stage(src, dst)
    tree(dst, {'.git/index': 'the stage\'s own index', 'tests/output/venv/x': 'ansible-test', 'extra.txt': 'x'})
    same_before = os.stat(str(dst / 'same.txt')).st_ino
    (src / 'a.txt').write_text('two, longer\n')
    (src / 'gone' / 'b.txt').unlink()
    (src / 'gone').rmdir()
    (src / 'gone').write_text('now a file\n')
    stage(src, dst)
    assert (dst / 'a.txt').read_text() == 'two, longer\n'
    assert (dst / 'gone').read_text() == 'now a file\n'
    assert not (dst / 'extra.txt').exists()
    assert (dst / '.git/index').exists() and (dst / 'tests/output/venv/x').exists()
    assert os.stat(str(dst / 'same.txt')).st_ino == same_before   # unchanged files are not copied again
