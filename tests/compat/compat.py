# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hashing-library sets a managed host plausibly has, and throw-away venvs that hold them.

Each set is a list of pip requirements; each row of the matrix is a set on one Python.  Venvs are built with the
Python's own ``venv`` and pip from the package index, cached in ``$DMS_COMPAT_CACHE`` (hack/test.sh points it
under ``.build/``; default: a directory in the system's temp dir) under a key made of the Python's version and
the requirements, so a second run builds nothing.  The Debian row uses the system's ``/usr/bin/python3`` with
Debian's own ``python3-passlib``, ``python3-bcrypt`` and ``python3-argon2`` (hack/test.sh installs them).  The
Debian 13 row runs in a container made from the test images' Debian 13 base (``dms-test-base:trixie``, built by
hack/build-test-images.sh) with Debian 13's packages installed by apt; without Docker or that image it is skipped.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

NOTES = []

SETS = {
    # What `pip install passlib bcrypt argon2-cffi` gave over the years: passlib 1.7.4 is the last passlib.
    'passlib1.7.4+bcrypt3.2': ['passlib==1.7.4', 'bcrypt==3.2.2', 'argon2-cffi==21.3.0'],
    'passlib1.7.4+bcrypt4.3': ['passlib==1.7.4', 'bcrypt==4.3.0', 'argon2-cffi==23.1.0'],
    'passlib1.7.4+bcrypt5.0': ['passlib==1.7.4', 'bcrypt==5.0.0', 'argon2-cffi==25.1.0'],
    # The maintained fork, as requirements/runtime.txt pins it, with cryptography for dms_dkim: the rows of this
    # set run all four state modules.
    'libpass1.9+bcrypt5.0': ['libpass==1.9.4', 'bcrypt==5.0.0', 'argon2-cffi==25.1.0', 'cryptography==50.0.2'],
    # Only SHA512-CRYPT's library: BLF-CRYPT and ARGON2ID must fail with install guidance, nothing written.
    'passlib-only': ['passlib==1.7.4'],
}
DEBIAN_PACKAGES = ('python3-passlib', 'python3-bcrypt', 'python3-argon2', 'python3-cryptography')

# (set, Python version): every set on the reference Python, the current set on every Python from 3.9 to 3.13,
# passlib 1.7.4 with bcrypt 5 on 3.13 (no crypt module) and the oldest set on the oldest Python.
REFERENCE_PYTHON = '3.11'
PYTHONS = ('3.9', '3.10', '3.11', '3.12', '3.13')
ROWS = sorted(set(
    [(name, REFERENCE_PYTHON) for name in SETS]
    + [('libpass1.9+bcrypt5.0', version) for version in PYTHONS]
    + [('passlib1.7.4+bcrypt5.0', '3.13'), ('passlib1.7.4+bcrypt3.2', '3.9')]
))


def find_python(version):
    """An interpreter of that version on this machine: on PATH, or installed by pyenv. None when there is none."""
    found = shutil.which('python%s' % version)
    candidates = [found] if found else []
    pyenv = shutil.which('pyenv')
    if pyenv:
        root = subprocess.run([pyenv, 'root'], capture_output=True, text=True, check=False).stdout.strip()
        versions = Path(root) / 'versions'
        if root and versions.is_dir():
            for path in sorted(versions.glob('%s.*' % version), reverse=True):
                candidates.append(str(path / 'bin' / ('python%s' % version)))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and _version_of(candidate) == version:
            return candidate
    return None


def _version_of(python):
    proc = subprocess.run([python, '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def cache_dir():
    return Path(os.environ.get('DMS_COMPAT_CACHE') or Path(tempfile.gettempdir()) / 'dms-compat-venvs')


def venv_for(set_name, python):
    """The venv's Python for a set on an interpreter; built (once) when missing. Raises on a failed build."""
    full = subprocess.run([python, '-c', 'import sys; print(sys.version)'], capture_output=True, text=True,
                          check=True).stdout.strip()
    key = hashlib.sha256(('%s\n%s\n%s' % (full, python, '\n'.join(SETS[set_name]))).encode()).hexdigest()[:12]
    home = cache_dir() / ('%s-py%s-%s' % (set_name, _version_of(python), key))
    stamp = home / '.complete'
    if not stamp.exists():
        if home.exists():
            shutil.rmtree(str(home))
        home.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([python, '-m', 'venv', str(home)], check=True, capture_output=True)
        proc = subprocess.run([str(home / 'bin' / 'python'), '-m', 'pip', 'install', '--quiet',
                               '--disable-pip-version-check'] + SETS[set_name],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError('pip install %s failed:\n%s' % (' '.join(SETS[set_name]), proc.stderr[-2000:]))
        stamp.write_text('\n'.join(SETS[set_name]) + '\n')
    return str(home / 'bin' / 'python')


def debian_python():
    """/usr/bin/python3 when Debian's packages are installed; else None."""
    if not os.access('/usr/bin/python3', os.X_OK) or not shutil.which('dpkg-query'):
        return None
    for package in DEBIAN_PACKAGES:
        proc = subprocess.run(['dpkg-query', '-W', '-f=${Status}', package], capture_output=True, text=True,
                              check=False)
        if 'install ok installed' not in proc.stdout:
            return None
    return '/usr/bin/python3'


DEBIAN13_BASE = 'dms-test-base:trixie'
DEBIAN13_DOCKERFILE = """\
FROM %s
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 %s >/dev/null \\
 && rm -rf /var/lib/apt/lists/*
""" % (DEBIAN13_BASE, ' '.join(DEBIAN_PACKAGES))


def debian13_image():
    """(image, None) with Debian 13's packages, built once from the test images' Debian 13 base; (None, why not)."""
    docker = shutil.which('docker')
    if not docker:
        return None, 'no docker'
    if subprocess.run([docker, 'image', 'inspect', DEBIAN13_BASE], capture_output=True, check=False).returncode:
        return None, 'no %s image (hack/build-test-images.sh builds it)' % DEBIAN13_BASE
    tag = 'dms-compat-debian13:%s' % hashlib.sha256(DEBIAN13_DOCKERFILE.encode()).hexdigest()[:12]
    if subprocess.run([docker, 'image', 'inspect', tag], capture_output=True, check=False).returncode:
        proc = subprocess.run([docker, 'build', '-q', '-t', tag, '-'], input=DEBIAN13_DOCKERFILE, text=True,
                              capture_output=True, check=False, timeout=600)
        if proc.returncode:   # apt needs Debian's archive: without it the row is skipped, saying why
            last = (proc.stderr.strip().splitlines() or ['?'])[-1]
            return None, 'building %s failed (%s)' % (tag, last[:200])
    return tag, None


class Container:
    """A container of ``image`` that sleeps, with ``shared`` mounted at the same path; removed on exit."""

    def __init__(self, image, shared):
        self.image, self.shared = image, str(shared)
        self.name = 'dms-compat-%d' % os.getpid()

    def __enter__(self):
        subprocess.run(['docker', 'rm', '-f', self.name], capture_output=True, check=False)
        subprocess.run(['docker', 'run', '-d', '--name', self.name, '-v', '%s:%s' % (self.shared, self.shared),
                        self.image, 'sleep', 'infinity'], capture_output=True, check=True)
        return self

    def packages(self):
        proc = subprocess.run(['docker', 'exec', self.name, 'dpkg-query', '-W', '-f=${Package} ${Version}, ']
                              + list(DEBIAN_PACKAGES) + ['python3'], capture_output=True, text=True, check=True)
        return proc.stdout.strip().rstrip(',')

    def __exit__(self, *exc):
        subprocess.run(['docker', 'rm', '-f', self.name], capture_output=True, check=False)
