# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mirror the work tree into the staging directory (hack/lib.sh's stage), with nothing but Python.

Usage: python3 hack/stage.py SOURCE DEST

Like a mirror with deletion: files, symlinks and directories of SOURCE appear in DEST with their modes and times;
a file is copied only when its size or modification time differs; what DEST has and SOURCE has not is removed.
The excluded names are neither copied nor removed (DEST keeps its own .git index and ansible-test's tests/output).
"""
from __future__ import annotations

import os
import shutil
import stat
import sys

# Excluded at the top of the tree only.
TOP = frozenset(['.git', '.ansible', '.venv', '.build', 'demo-output', os.path.join('tests', 'output')])
# Excluded at any depth.
ANYWHERE = frozenset(['__pycache__', '.pytest_cache', '.hypothesis'])


def excluded(rel):
    return rel in TOP or os.path.basename(rel) in ANYWHERE


def same_file(src, dst):
    try:
        other = os.lstat(dst)
    except FileNotFoundError:
        return False
    return (stat.S_ISREG(other.st_mode) and other.st_size == src.st_size
            and other.st_mtime_ns == src.st_mtime_ns and stat.S_IMODE(other.st_mode) == stat.S_IMODE(src.st_mode))


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def mirror(source, dest, rel=''):
    src_dir = os.path.join(source, rel)
    dst_dir = os.path.join(dest, rel)
    if os.path.islink(dst_dir) or (os.path.lexists(dst_dir) and not os.path.isdir(dst_dir)):
        remove(dst_dir)
    os.makedirs(dst_dir, exist_ok=True)
    names = set()
    for entry in os.scandir(src_dir):
        child = os.path.join(rel, entry.name)
        if excluded(child):
            continue
        names.add(entry.name)
        src, dst = entry.path, os.path.join(dest, child)
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(src)
            if not (os.path.islink(dst) and os.readlink(dst) == target):
                remove(dst)
                os.symlink(target, dst)
        elif stat.S_ISDIR(info.st_mode):
            mirror(source, dest, child)
        elif stat.S_ISREG(info.st_mode) and not same_file(info, dst):
            remove(dst)
            shutil.copy2(src, dst, follow_symlinks=False)
    for entry in os.scandir(dst_dir):
        if entry.name not in names and not excluded(os.path.join(rel, entry.name)):
            remove(entry.path)
    shutil.copystat(src_dir, dst_dir, follow_symlinks=False)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__.split('\n\n')[1] + '\n')
        return 2
    mirror(os.path.abspath(argv[1]), os.path.abspath(argv[2]))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
