#!/usr/bin/env bash
# Run a command with no route off this machine: a new network namespace with only loopback up.
# Needs root (or user namespaces); without them the connect tripwire (tests/tripwire) still guards
# every Python process, and the tests report which protection was in force.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$here/tripwire${PYTHONPATH:+:$PYTHONPATH}"
if unshare -n true 2>/dev/null; then
    export HN_TEST_NETNS=1
    # A public address on lo plays an allowed public site (SSRF probes redirect from it to loopback);
    # in this namespace lo is the only interface, so nothing sent to it can leave the machine.
    export HN_TEST_PUBLIC_STANDIN=203.0.114.80
    exec unshare -n bash -c 'ip link set lo up && ip addr add "$HN_TEST_PUBLIC_STANDIN/32" dev lo && exec "$@"' run_offline "$@"
fi
echo "run_offline: cannot create a network namespace; relying on the connect tripwire only" >&2
exec "$@"
