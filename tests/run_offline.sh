#!/usr/bin/env bash
# Run a command with no route off this machine: a new network namespace with only loopback up.
# Needs root (or user namespaces); without them the connect tripwire (tests/tripwire) still guards
# every Python process, and the tests report which protection was in force.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$here/tripwire${PYTHONPATH:+:$PYTHONPATH}"
if unshare -n true 2>/dev/null; then
    export HN_TEST_NETNS=1
    exec unshare -n bash -c 'ip link set lo up && exec "$@"' run_offline "$@"
fi
echo "run_offline: cannot create a network namespace; relying on the connect tripwire only" >&2
exec "$@"
