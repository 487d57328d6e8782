#!/usr/bin/env bash
# Starts a Kubernetes control plane on 127.0.0.1 for the integration tests:
# etcd, kube-apiserver (RBAC, a token file, a CA and serving certificate made
# with openssl) and kube-controller-manager (the deployment and replica set
# controllers are real; there is no scheduler or kubelet, so pods stay Pending).
# Then, as admin: namespaces recoverbot-test and other, deploy/rbac.yaml applied
# to recoverbot-test, a token for the bot's ServiceAccount (TokenRequest API),
# and two kubeconfigs:
#
#   STATE/bot.kubeconfig    the bot's ServiceAccount token; namespace recoverbot-test
#   STATE/admin.kubeconfig  system:masters, for test set-up only
#
# STATE/env exports RECOVERBOT_TEST_KUBECONFIG and RECOVERBOT_TEST_KUBECONFIG_ADMIN.
# Every process's PID is written to STATE/*.pid as soon as it starts; down.sh
# STATE stops them by those PIDs, also after a failure here.
#
# Usage: test/k8s/up.sh STATE   (STATE: an empty directory; binaries from build.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="$here/bin"
state="${1:?usage: up.sh STATE_DIR}"
mkdir -p "$state"
state="$(cd "$state" && pwd)"
ns=recoverbot-test
other=other

for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [ -x "$bin/$b" ] || { echo "up.sh: $bin/$b missing: run test/k8s/build.sh" >&2; exit 1; }
done
command -v openssl >/dev/null || { echo "up.sh: openssl is needed for the certificates" >&2; exit 1; }

log() { echo "up.sh: $*" >&2; }

# fail prints the end of a component's log and exits (down.sh cleans up).
fail() {
  log "$1"
  [ -n "${2:-}" ] && [ -f "$state/$2.log" ] && tail -n 30 "$state/$2.log" >&2
  exit 1
}

# free_port VAR sets VAR to a TCP port nothing on 127.0.0.1 accepts connections
# on (and not handed out before). A port taken between this check and the
# server's bind makes that server exit, which the readiness wait reports.
taken=" "
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 30000))
    case "$taken" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken="$taken$p "
      printf -v "$1" %s "$p"
      return
    fi
  done
  fail "no free port found"
}

# start NAME ARGS...: runs a binary in the background, its PID in STATE/NAME.pid.
# setsid gives it a session of its own, so a Ctrl-C meant for the tests does not
# take the control plane down under them; down.sh stops it. (In a background
# job the shell's child is no process group leader, so setsid execs in place:
# $! is the server's PID.)
start() {
  local name=$1
  shift
  $setsid "$bin/$name" "$@" >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}
setsid=$(command -v setsid || true)

# alive NAME: its process exists and has not exited (a zombie until reaped).
alive() {
  local pid st
  pid=$(cat "$state/$1.pid")
  read -r _ _ st _ <"/proc/$pid/stat" 2>/dev/null && [ "$st" != Z ]
}

# wait_for NAME SECONDS CMD...: polls CMD until it succeeds, NAME dies or time is up.
wait_for() {
  local name=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || fail "$name exited" "$name"
    [ $SECONDS -lt $deadline ] || fail "$name not ready after ${secs}s" "$name"
    sleep 0.2
  done
}

free_port etcd_client
free_port etcd_peer
free_port api_port

# ---- certificates and keys ----
pki="$state/pki"
mkdir -p "$pki"
(
  cd "$pki"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=recoverbot-test-ca" -out ca.crt 2>/dev/null
  openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key 2>/dev/null
  openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' >apiserver.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 2 \
    -extfile apiserver.ext -out apiserver.crt 2>/dev/null
  # The service-account key pair: the API server signs tokens with sa.key and
  # verifies them with sa.pub; the controller manager signs with sa.key too.
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  # The static token file holds the admin token only (set-up, never the tests'
  # bot client): token,user,uid,"groups".
  admin_token=$(openssl rand -hex 24)
  echo "$admin_token,recoverbot-test-admin,recoverbot-test-admin,\"system:masters\"" >tokens.csv
  chmod 600 ./*.key tokens.csv
) || fail "openssl failed"
admin_token=$(cut -d, -f1 "$pki/tokens.csv")
server="https://127.0.0.1:$api_port"

# ---- kubeconfigs ----
kc() { "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"; }
kubeconfig() { # FILE USER TOKEN NAMESPACE
  local k=("$bin/kubectl" --kubeconfig "$1" config)
  "${k[@]}" set-cluster test --server "$server" --certificate-authority "$pki/ca.crt" --embed-certs >/dev/null
  "${k[@]}" set-credentials "$2" --token "$3" >/dev/null
  "${k[@]}" set-context test --cluster test --user "$2" --namespace "$4" >/dev/null
  "${k[@]}" use-context test >/dev/null
  chmod 600 "$1"
}
kubeconfig "$state/admin.kubeconfig" admin "$admin_token" default

# ---- etcd ----
start etcd --name test --data-dir "$state/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "test=http://127.0.0.1:$etcd_peer" \
  --unsafe-no-fsync --log-level warn
etcd_health() ( # a subshell: the fd is its own
  exec 3<>"/dev/tcp/127.0.0.1/$etcd_client" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && grep -q '"health":"true"' <&3
)
wait_for etcd 30 etcd_health

# ---- kube-apiserver ----
start kube-apiserver \
  --etcd-servers "http://127.0.0.1:$etcd_client" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --endpoint-reconciler-type none \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --cert-dir "$state/apiserver-certs" \
  --token-auth-file "$pki/tokens.csv" \
  --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 \
  --profiling=false
wait_for kube-apiserver 90 kc get --raw /readyz

# ---- kube-controller-manager ----
mkdir -p "$state/flexvolume"
start kube-controller-manager \
  --kubeconfig "$state/admin.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 --cert-dir "$state/kcm-certs" \
  --leader-elect=false \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials=false \
  --flex-volume-plugin-dir "$state/flexvolume" \
  --profiling=false

# ---- namespaces, RBAC, the bot's token ----
kc create namespace "$ns" >/dev/null
kc create namespace "$other" >/dev/null
# A pod needs its namespace's "default" ServiceAccount (ServiceAccount admission),
# which the controller manager's serviceaccount controller creates: its
# appearance is also the sign that the controller manager is running.
wait_for kube-controller-manager 60 kc -n "$ns" get serviceaccount default
wait_for kube-controller-manager 30 kc -n "$other" get serviceaccount default

# deploy/rbac.yaml names the bot's namespace and the namespace it acts in; here
# both are recoverbot-test (the README says: change only the namespace).
sed -E "s/^([[:space:]]*namespace:[[:space:]]*).*/\1$ns/" "$repo/deploy/rbac.yaml" >"$state/rbac.yaml"
kc apply -f "$state/rbac.yaml" >/dev/null
bot_token=$(kc -n "$ns" create token recoverbot --duration 2h)
kubeconfig "$state/bot.kubeconfig" recoverbot "$bot_token" "$ns"
"$bin/kubectl" --kubeconfig "$state/bot.kubeconfig" auth whoami -o jsonpath='{.status.userInfo.username}' >"$state/bot.user"
[ "$(cat "$state/bot.user")" = "system:serviceaccount:$ns:recoverbot" ] || fail "the bot's kubeconfig authenticates as $(cat "$state/bot.user")"

cat >"$state/env" <<EOF
export RECOVERBOT_TEST_KUBECONFIG='$state/bot.kubeconfig'
export RECOVERBOT_TEST_KUBECONFIG_ADMIN='$state/admin.kubeconfig'
EOF
log "control plane up at $server (state: $state)"
