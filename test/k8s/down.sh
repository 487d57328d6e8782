#!/usr/bin/env bash
# Stops what up.sh STATE started, by the PIDs in STATE/*.pid (controller
# manager, API server, then etcd), and removes STATE. A PID is signalled only
# if that process's command line still names STATE, so a recycled PID is left
# alone. Safe to run twice, and after a partial up.sh.
#
# Usage: test/k8s/down.sh STATE   (KEEP_STATE=1 keeps STATE and its logs)
set -uo pipefail
state="${1:?usage: down.sh STATE_DIR}"
[ -d "$state" ] || exit 0
state="$(cd "$state" && pwd)"

ours() { # PID: alive and started by up.sh with this state directory
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$state"
}

for name in kube-controller-manager kube-apiserver etcd; do
  f="$state/$name.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do # up to 10 s for a clean exit
      ours "$pid" || break
      sleep 0.2
    done
    if ours "$pid"; then
      echo "down.sh: $name ($pid) ignored SIGTERM: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$f"
done

if [ "${KEEP_STATE:-}" = 1 ]; then
  echo "down.sh: kept $state" >&2
else
  rm -rf "$state"
fi
