#!/usr/bin/env bash
# The whole test suite: lint, sanity, unit, compat (dms_account on every hashing-library set and Python a managed
# host plausibly has), integration (real postfix/dovecot/opendkim tools), reliability (concurrency, crashes, full
# disk, secrets, parser properties, hostile input), molecule.
# Installs what it needs: a Python venv from requirements/test.txt and Debian packages (as root).
# docs (antsibull-docs lint and the Sphinx site, hack/docs.sh), galaxy (the collection tarball: its contents and
# galaxy-importer).
# Usage: hack/test.sh [lint|sanity|unit|docs|galaxy|compat|integration|reliability|molecule ...]   (default: all)
#        hack/test.sh pytest [pytest arguments ...]
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(lint sanity unit docs galaxy compat integration reliability molecule)
# hack/test.sh pytest ARGS...: pytest on the staged collection with these arguments (one file, -k …), for work on
# a change.
pytest_args=()
if [ "${steps[0]}" = pytest ]; then
  pytest_args=("${steps[@]:1}"); steps=(pytest)
fi

ensure_venv "$ROOT/requirements/test.txt"
ensure_debs git postfix postfix-pcre dovecot-core opendkim opendkim-tools openssl podman runc time \
  python3-venv python3-passlib python3-bcrypt python3-argon2 python3-cryptography shellcheck dovecot-sieve
stage
cd "$STAGE"

# No leftovers: nothing the suite runs may write under ~/.ansible/collections. ansible-lint runs offline
# (.ansible-lint) and molecule without its prerun (.config/molecule/config.yml), which would otherwise install
# this collection there; everything else finds it through ANSIBLE_COLLECTIONS_PATH (the staged tree). Checked
# after the last step.
user_collections="${ANSIBLE_HOME:-$HOME/.ansible}/collections"
collections_state() {
  if [ -e "$user_collections" ]; then
    find "$user_collections" -printf '%P %y %s %T@\n' | LC_ALL=C sort | sha256sum
  else
    echo absent
  fi
}
collections_before="$(collections_state)"
collections_since="$(date +%s)"
no_leftovers() {
  [ "$(collections_state)" = "$collections_before" ] && return 0
  echo "the suite changed $user_collections; written since it started:" >&2
  find "$user_collections" -newermt "@$collections_since" -print 2>/dev/null | head -n 20 >&2
  return 1
}

failed=()

# ansible-test bootstraps pip in its venvs with a script it would download from a URL;
# give it a local stand-in (stage() already gave the staged tree the git index it lists files with).
prepare_ansible_test() {
  local pipver cache
  pipver="$(python -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; print(g(type("P", (), {"version": "3"})())["pip"])')"
  cache="$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
  mkdir -p "$(dirname "$cache")"
  cp "$ROOT/hack/ansible-test-get-pip.py" "$cache"
}
# ansible-test sanity only warns when a checker it needs is missing (e.g. 'Required program "shellcheck" not
# found') and then skips that test: a missing checker fails the step here.
sanity() {
  local log="$BUILD/sanity.log"
  ansible-test sanity "$@" 2>&1 | tee "$log" || return 1
  if grep -E 'Required program .* not found' "$log" >&2; then
    echo "a sanity checker is missing (above): install it (hack/test.sh installs Debian's shellcheck)" >&2
    return 1
  fi
}
# The tarball Galaxy would get, built from the checkout as a user builds it, and galaxy-importer on it (configured
# by hack/galaxy-importer.cfg: no container, so without its ansible-test sanity, which the sanity step runs). Fails
# on anything it warns about, and on a tarball with files of the workshop (tests, images, .build, .venv, demo
# output; tests/unit/test_galaxy_tarball.py checks build_ignore on a copy that has them all).
galaxy_check() {
  local out="$BUILD/galaxy" tarball
  rm -rf "$out"
  mkdir -p "$out"
  ansible-galaxy collection build --force --output-path "$out" "$ROOT" >"$out/build.log" 2>&1 \
    || { cat "$out/build.log" >&2; return 1; }
  tarball="$(ls "$out"/dms-mailserver-*.tar.gz)"
  if tar -tzf "$tarball" | grep -E '^(tests|hack|extensions/molecule|molecule|bench|requirements|\.build|\.venv|\.git|demo-output)(/|$)' >&2
  then
    echo "the tarball holds the files above, which build_ignore in galaxy.yml should keep out" >&2
    return 1
  fi
  # galaxy-importer writes importer_result.json into its working directory.
  (cd "$out" && GALAXY_IMPORTER_CONFIG="$ROOT/hack/galaxy-importer.cfg" python -m galaxy_importer.main "$tarball") \
    >"$out/importer.log" 2>&1 || { cat "$out/importer.log" >&2; return 1; }
  if grep -E '^(WARNING|ERROR|CRITICAL):' "$out/importer.log" >&2; then
    echo "galaxy-importer warned about the above (log: $out/importer.log)" >&2
    return 1
  fi
  echo "$(basename "$tarball"): $(tar -tzf "$tarball" | wc -l) files; galaxy-importer: $(tail -n 1 "$out/importer.log")"
}
# A step that runs while the next ones do (its output goes to a log, printed when it is collected): for the
# steps that mostly wait on containers of their own.
bg_pids=(); bg_names=(); bg_logs=(); bg_starts=()
start_background() {
  local name="$1" log="$2"; shift 2
  say "$name: started in the background (log: $log)"
  "$@" >"$log" 2>&1 &
  bg_pids+=("$!"); bg_names+=("$name"); bg_logs+=("$log"); bg_starts+=("$SECONDS")
}
collect_background() {
  local i
  for i in "${!bg_pids[@]}"; do
    say "${bg_names[$i]}: waiting for it"
    if wait "${bg_pids[$i]}"; then
      cat "${bg_logs[$i]}"
      say "${bg_names[$i]}: ok ($((SECONDS - bg_starts[i])) s, in the background)"
    else
      cat "${bg_logs[$i]}"
      say "${bg_names[$i]}: FAILED ($((SECONDS - bg_starts[i])) s, in the background)"
      failed+=("${bg_names[$i]}")
    fi
  done
  bg_pids=(); bg_names=(); bg_logs=(); bg_starts=()
}
run_step() {
  local name="$1"; shift
  say "$name"
  local start=$SECONDS
  if "$@"; then
    say "$name: ok ($((SECONDS - start)) s)"
  else
    say "$name: FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

for step in "${steps[@]}"; do
  case "$step" in
    lint)
      # tests/output holds ansible-test's own virtual environments once sanity has run.
      run_step "ansible-lint (production profile)" ansible-lint --profile production --strict --exclude tests/output
      run_step "changelog fragments" antsibull-changelog lint
      ;;
    sanity)
      # ansible-test sanity in its own venvs for the controller's Python; no ignore files.
      prepare_ansible_test
      run_step "ansible-test sanity" sanity --venv --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no
      ;;
    unit)
      run_step "unit tests" python -m pytest -q -p no:cacheprovider tests/unit
      ;;
    compat)
      # Throw-away venvs per library set and Python (tests/compat/compat.py), built once and kept under .build/.
      # The Debian 13 row runs in a container from the Debian 13 base, which building dms-test:16 makes.
      run_step "container engine and the DMS 16 test image" bash "$ROOT/hack/build-test-images.sh" 16
      run_step "hashing library matrix" env DMS_COMPAT_CACHE="$BUILD/compat" \
        python -m pytest -q -p no:cacheprovider -rs tests/compat
      ;;
    integration)
      # Three workers on two cores, each taking whole files (their module fixtures share containers, and each file
      # has host ports and container names of its own): the files mostly wait on containers, and with two
      # workers the load stayed near 1.3. The images are built first, once, so that no two workers build the same
      # one.
      run_step "container engine and test images" bash "$ROOT/hack/build-test-images.sh"
      run_step "integration tests" python -m pytest -q -p no:cacheprovider -n 3 --dist loadfile --durations=25 \
        tests/integration
      ;;
    reliability)
      # docs/reliability.md says what each test proves. The full-disk test mounts a tmpfs (root only).
      # Two workers, each taking whole files (module fixtures build one world per file).
      run_step "reliability tests" python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=10 \
        tests/reliability
      ;;
    molecule)
      # Scenarios against a real container engine on this host (needs root: dockerd, debootstrap). The default
      # scenario runs once per DMS release line, against its stand-in; multihost (the same role, twice, from one
      # inventory: nothing in it differs between the lines) runs once, on the default line. DMS_TEST_IMAGE names
      # the image; set DMS_TEST_IMAGE_15 / DMS_TEST_IMAGE_16 to run them against DMS's own images where they can
      # be pulled. Every scenario but default runs in the background meanwhile (firewall: its own containers and
      # networks; multihost: its own container names, base directories and ports); two runs of one scenario
      # would collide, runs of different scenarios do not.
      run_step "container engine and test images" bash "$ROOT/hack/build-test-images.sh"
      for scenario in extensions/molecule/*/molecule.yml; do
        scenario="$(basename "$(dirname "$scenario")")"
        case "$scenario" in
          default) ;;
          multihost)
            start_background "molecule scenario $scenario on ${DMS_TEST_IMAGE_16:-dms-test:16}" \
              "$BUILD/molecule-$scenario.log" \
              env DMS_TEST_IMAGE="${DMS_TEST_IMAGE_16:-dms-test:16}" molecule test -s "$scenario" ;;
          *) start_background "molecule scenario $scenario" "$BUILD/molecule-$scenario.log" \
               molecule test -s "$scenario" ;;
        esac
      done
      for image in "${DMS_TEST_IMAGE_15:-dms-test:15.1}" "${DMS_TEST_IMAGE_16:-dms-test:16}"; do
        run_step "molecule scenario default on $image" env DMS_TEST_IMAGE="$image" molecule test -s default
      done
      collect_background
      ;;
    docs)
      # antsibull-docs lint-collection-docs and the docs site (hack/docs.sh), where any Sphinx warning fails.
      run_step "docs: antsibull-docs lint and a warning-free Sphinx site" bash "$ROOT/hack/docs.sh"
      ;;
    galaxy)
      run_step "galaxy: the collection tarball and galaxy-importer" galaxy_check
      ;;
    pytest)
      # No image is built here: the tests use dms-test:15.1 and dms-test:16 as they are (hack/build-test-images.sh
      # makes them), or the images named by DMS_TEST_IMAGE_15 / DMS_TEST_IMAGE_16.
      run_step "pytest ${pytest_args[*]}" python -m pytest -p no:cacheprovider "${pytest_args[@]}"
      ;;
    *) die "unknown step '$step' (lint, sanity, unit, compat, integration, reliability, molecule, docs, galaxy, pytest)";;
  esac
done

run_step "nothing written under $user_collections" no_leftovers

if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED steps: %s\n' "${failed[*]}" >&2
  exit 1
fi
say "all steps passed: ${steps[*]}"
