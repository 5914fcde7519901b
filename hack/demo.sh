#!/usr/bin/env bash
# The README's first command: runs the collection's main job on an embedded default, on localhost.
# Everything it writes goes under demo-output/ in this checkout. A second run changes nothing.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"

ensure_venv "$ROOT/requirements/demo.txt"
stage
mkdir -p "$ROOT/demo-output"
say "running playbooks/demo.yml on localhost (writes into $ROOT/demo-output)"
ansible-playbook -i localhost, -c local \
  -e "ansible_python_interpreter=$VENV/bin/python" \
  -e "dms_demo_dir=$ROOT/demo-output" \
  --diff "$STAGE/playbooks/demo.yml" "$@"
say "the DMS config directory is in $ROOT/demo-output/config:"
ls -l "$ROOT/demo-output/config"
