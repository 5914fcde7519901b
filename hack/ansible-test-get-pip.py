"""Stand-in for the pip bootstrap script ansible-test fetches from a URL.

ansible-test creates its sanity venvs without pip and runs a cached
``get_pip_<version>.py`` to add it; that script normally comes from a URL
this project's machines cannot reach.  This one installs the pip bundled
with Python (ensurepip) and then the requested packages from the package
index with that pip.  hack/test.sh puts it where ansible-test looks.
"""
import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check'] + args)
