#!/usr/bin/env bash
# Build the baton-agent and baton-controller .debs with cargo-deb and check
# them on this machine: install, user and group, file modes and owners,
# `validate` as the service user, a config edit that survives a reinstall,
# `systemd-analyze verify` and `security`, lintian, purge.
#
# Runs as root on a fresh Debian 12 (CI) or a developer machine: it installs
# and purges the packages (an existing install of them is purged first) and
# needs no running systemd.
#
# Usage: packaging/test/verify-deb.sh [--no-build]
#   --no-build  package the release binaries already in target/release
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

build=1
case "${1:-}" in
    --no-build) build=0 ;;
    "") ;;
    *)
        echo "usage: $0 [--no-build]" >&2
        exit 2
        ;;
esac

CARGO_DEB_VERSION=3.8.0
# systemd-analyze security --offline=true: the highest accepted exposure, in
# tenths (systemd 252 takes an integer: 20 = an exposure level of 2.0).
EXPOSURE_THRESHOLD=20
UNIT_DIR=/usr/lib/systemd/system

step() { printf '\n==> %s\n' "$*"; }
fail() {
    printf 'verify-deb: FAIL: %s\n' "$*" >&2
    exit 1
}
ok() { printf '    ok: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (it installs and purges packages)"

work=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# --- tools ---------------------------------------------------------------
step "Tools"
missing=()
command -v lintian >/dev/null || missing+=(lintian)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v setpriv >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(cargo deb --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
cargo deb --version
lintian --version
systemd-analyze --version | head -n 1

# --- build ---------------------------------------------------------------
step "Build (release) and package"
if [ "$build" = 1 ]; then
    cargo build --release --locked -p baton-agent -p baton-controller
fi
agent_deb=$(cargo deb --no-build --locked -p baton-agent)
controller_deb=$(cargo deb --no-build --locked -p baton-controller)
for deb in "$agent_deb" "$controller_deb"; do
    [ -f "$deb" ] || fail "cargo deb did not produce a file: $deb"
    echo "$deb"
done

step "Package metadata"
for deb in "$agent_deb" "$controller_deb"; do
    pkg=$(dpkg-deb -f "$deb" Package)
    conf="/etc/baton/${pkg#baton-}.toml"
    dpkg-deb -f "$deb" Depends | grep -q 'systemd | systemd-standalone-sysusers' ||
        fail "$pkg: Depends lacks systemd | systemd-standalone-sysusers"
    [ "$(dpkg-deb -I "$deb" conffiles)" = "$conf" ] || fail "$pkg: conffiles is not exactly $conf"
    # Upgrades restart a running service; a fresh install only enables it
    # (it needs configuring first); remove stops it.
    dpkg-deb -I "$deb" postinst | grep -q "deb-systemd-invoke try-restart $pkg.service" ||
        fail "$pkg: postinst does not restart the service on upgrade"
    dpkg-deb -I "$deb" postinst | grep -q "deb-systemd-helper enable $pkg.service" ||
        fail "$pkg: postinst does not enable the unit"
    dpkg-deb -I "$deb" prerm | grep -q "deb-systemd-invoke stop $pkg.service" ||
        fail "$pkg: prerm does not stop the service on remove"
    dpkg-deb -I "$deb" postinst | grep -q "systemd-sysusers .*$pkg.conf" ||
        fail "$pkg: postinst does not run systemd-sysusers"
    ok "$pkg: depends, conffiles, maintainer scripts"
done

# --- install -------------------------------------------------------------
step "Install"
for pkg in baton-agent baton-controller; do
    status=$(dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ -n "$status" ] && [ "$status" != not-installed ]; then
        echo "purging an earlier install of $pkg"
        dpkg --purge "$pkg" >/dev/null
    fi
done
rm -rf /etc/baton/tls
export DEBIAN_FRONTEND=noninteractive
dpkg -i "$agent_deb" "$controller_deb" </dev/null

step "User and group"
getent group baton >/dev/null || fail "group baton missing"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd baton) || fail "user baton missing"
[ "$uid" -lt 1000 ] || fail "baton is not a system user (uid $uid)"
[ "$(getent group baton | cut -d: -f3)" = "$gid" ] || fail "baton's primary group is not baton"
case "$shell" in */nologin | */false) ;; *) fail "baton has a login shell: $shell" ;; esac
ok "baton uid=$uid gid=$gid home=$home shell=$shell"

step "File modes and owners"
expect() { # path mode user group
    local got
    got=$(stat -c '%a %U %G' "$1") || fail "$1 missing"
    [ "$got" = "$2 $3 $4" ] || fail "$1 is '$got', expected '$2 $3 $4'"
    ok "$1 $got"
}
expect /usr/bin/baton-agent 755 root root
expect /usr/bin/baton-controller 755 root root
expect /usr/bin/batonctl 755 root root
expect /etc/baton/agent.toml 640 root baton
expect /etc/baton/controller.toml 640 root baton
expect "$UNIT_DIR/baton-agent.service" 644 root root
expect "$UNIT_DIR/baton-controller.service" 644 root root
expect /usr/lib/sysusers.d/baton-agent.conf 644 root root
expect /usr/lib/sysusers.d/baton-controller.conf 644 root root
expect /var/lib/baton/agent 700 baton baton
expect /var/lib/baton/agent/dumps 750 baton baton
expect /var/lib/baton/controller 700 baton baton
expect /usr/share/baton/grafana/baton.json 644 root root
# The installed dashboard is the repository's, and parses as JSON.
cmp -s /usr/share/baton/grafana/baton.json "$repo/packaging/grafana/baton.json" ||
    fail "the installed Grafana dashboard differs from packaging/grafana/baton.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"], "no panels"' \
    /usr/share/baton/grafana/baton.json || fail "the installed Grafana dashboard does not parse"
ok "the Grafana dashboard is installed and parses"
[ -L /etc/systemd/system/multi-user.target.wants/baton-agent.service ] || fail "baton-agent.service not enabled"
[ -L /etc/systemd/system/multi-user.target.wants/baton-controller.service ] || fail "baton-controller.service not enabled"
ok "both units enabled"

# --- validate as the service user -----------------------------------------
as_baton() { setpriv --reuid=baton --regid=baton --init-groups "$@"; }
as_nobody() { setpriv --reuid=nobody --regid=nogroup --init-groups "$@"; }

step "Validate as the service user"
out=$(as_baton /usr/bin/baton-agent --config /etc/baton/agent.toml validate) ||
    fail "baton-agent validate failed on the shipped config"
echo "$out"
grep -q '^Config OK' <<<"$out" || fail "agent validate printed no 'Config OK'"
grep -q 'state_dir=/var/lib/baton/agent ' <<<"$out" || fail "agent state_dir is not /var/lib/baton/agent"
if as_nobody /usr/bin/baton-agent --config /etc/baton/agent.toml validate >/dev/null 2>&1; then
    fail "the agent config is readable by other users"
fi
ok "other users cannot read the agent config"

# The shipped controller config needs a certificate: validate names the key.
set +e
out=$(as_baton /usr/bin/baton-controller --config /etc/baton/controller.toml validate 2>&1)
code=$?
set -e
echo "$out"
[ "$code" = 78 ] || fail "controller validate without a certificate exited $code, expected 78"
grep -q 'tls.cert_file' <<<"$out" || fail "controller validate does not name tls.cert_file"
ok "without a certificate the controller refuses to start, naming tls.cert_file"
# The operator's recipe (packaging/README.md): `tls init` makes a CA and a
# certificate for localhost where the config expects it; the service user then
# gets the key (kept 0600) and the directory.
/usr/bin/baton-controller tls init --dir /etc/baton/tls --san localhost,127.0.0.1 >"$work/tls-init.out" ||
    fail "baton-controller tls init failed"
cat "$work/tls-init.out"
grep -q '^  cert_file = "/etc/baton/tls/controller.pem"$' "$work/tls-init.out" ||
    fail "tls init did not print the cert_file line"
expect /etc/baton/tls 700 root root
expect /etc/baton/tls/ca.pem 644 root root
expect /etc/baton/tls/ca.key 600 root root
expect /etc/baton/tls/controller.pem 644 root root
expect /etc/baton/tls/controller.key 600 root root
if /usr/bin/baton-controller tls init --dir /etc/baton/tls --san localhost >/dev/null 2>&1; then
    fail "tls init overwrote existing files without --force"
fi
ok "tls init refuses to overwrite without --force"
chgrp baton /etc/baton/tls
chmod 0750 /etc/baton/tls
# A key the group may read is refused, naming the key, the mode and the fix.
chgrp baton /etc/baton/tls/controller.key
chmod 0640 /etc/baton/tls/controller.key
set +e
out=$(as_baton /usr/bin/baton-controller --config /etc/baton/controller.toml validate 2>&1)
code=$?
set -e
[ "$code" = 78 ] || fail "controller validate with a 0640 key exited $code, expected 78"
grep -q 'tls.key_file.*mode 0640.*chmod 600' <<<"$out" || fail "controller validate: no key mode hint: $out"
ok "a TLS key open to the group is refused (exit 78, chmod 600 hint)"
chown baton:baton /etc/baton/tls/controller.key
chmod 0600 /etc/baton/tls/controller.key
out=$(as_baton /usr/bin/baton-controller --config /etc/baton/controller.toml validate) ||
    fail "baton-controller validate failed with a certificate"
echo "$out"
grep -q '^Config OK: listen 0.0.0.0:8420 (HTTPS)' <<<"$out" || fail "controller validate: unexpected summary"
if as_nobody /usr/bin/baton-controller --config /etc/baton/controller.toml validate >/dev/null 2>&1; then
    fail "the controller config is readable by other users"
fi
ok "other users cannot read the controller config"

# --- config and state survive a reinstall ----------------------------------
step "Upgrade to a rebuilt 0.1.0-2 whose default configs changed"
# dpkg replaces an unmodified conffile root:root; postinst must regroup it
# (before the debhelper block restarts a running service).
upgraded=()
for deb in "$agent_deb" "$controller_deb"; do
    pkg=$(dpkg-deb -f "$deb" Package)
    dpkg-deb -R "$deb" "$work/$pkg"
    echo "# changed by the upgrade test" >>"$work/$pkg/etc/baton/${pkg#baton-}.toml"
    sed -i 's/^Version: .*/Version: 0.1.0-2/' "$work/$pkg/DEBIAN/control"
    dpkg-deb --root-owner-group -b "$work/$pkg" "$work/${pkg}_0.1.0-2.deb" >/dev/null
    upgraded+=("$work/${pkg}_0.1.0-2.deb")
done
dpkg -i "${upgraded[@]}" </dev/null
for conf in agent controller; do
    [ "$(tail -n 1 /etc/baton/$conf.toml)" = "# changed by the upgrade test" ] ||
        fail "$conf.toml was not replaced by the upgrade"
    expect /etc/baton/$conf.toml 640 root baton
done

step "Edit the config, reinstall, check the edit survived"
sed -i 's/^#slots = 1$/slots = 3/' /etc/baton/agent.toml
grep -q '^slots = 3$' /etc/baton/agent.toml || fail "could not edit agent.toml"
sed -i 's/^#poll_hold = "25s"$/poll_hold = "20s"/' /etc/baton/controller.toml
grep -q '^poll_hold = "20s"$' /etc/baton/controller.toml || fail "could not edit controller.toml"
echo kept >/var/lib/baton/agent/marker
dpkg -i "${upgraded[@]}" </dev/null
grep -q '^slots = 3$' /etc/baton/agent.toml || fail "the agent.toml edit did not survive a reinstall"
grep -q '^poll_hold = "20s"$' /etc/baton/controller.toml || fail "the controller.toml edit did not survive a reinstall"
[ "$(cat /var/lib/baton/agent/marker)" = kept ] || fail "agent state did not survive a reinstall"
expect /etc/baton/agent.toml 640 root baton
expect /etc/baton/controller.toml 640 root baton
out=$(as_baton /usr/bin/baton-agent --config /etc/baton/agent.toml validate) ||
    fail "agent validate failed after the edit"
grep -q ' slots=3 ' <<<"$out" || fail "validate does not see the edited slots"
ok "edits, modes and state kept"

# --- the packaged files at work ---------------------------------------------
step "Smoke: controller and agent as baton, with the units' command lines"
# The units' ExecStart plus overrides for this test: a free port, this CA.
wait_for() { # description, command...: poll up to 60 s
    local what=$1 _
    shift
    for _ in $(seq 1 120); do
        "$@" && return 0
        sleep 0.5
    done
    fail "timed out waiting for $what"
}
alive() { kill -0 "$1" 2>/dev/null || fail "$2 exited early (see above)"; }
admin=$(as_baton /usr/bin/baton-controller --config /etc/baton/controller.toml init) ||
    fail "baton-controller init failed"
# setpriv itself in the background (not the as_baton function, which would
# fork a subshell): $! is then the daemon's pid, for the signals below.
setpriv --reuid=baton --regid=baton --init-groups \
    /usr/bin/baton-controller --config /etc/baton/controller.toml --listen 127.0.0.1:0 run &
ctl_pid=$!
pids+=("$ctl_pid")
wait_for "the controller's listen.addr" test -s /var/lib/baton/controller/listen.addr
alive "$ctl_pid" baton-controller
port=$(sed 's/.*://' /var/lib/baton/controller/listen.addr)
export BATON_URL="https://localhost:$port" BATON_CA_FILE=/etc/baton/tls/ca.pem BATON_TOKEN="$admin"
batonctl enroll create --group verify-deb --expires 1h >/etc/baton/enroll.token
chown baton:baton /etc/baton/enroll.token
chmod 0600 /etc/baton/enroll.token
BATON_AGENT_TLS_CA_FILE=/etc/baton/tls/ca.pem setpriv --reuid=baton --regid=baton --init-groups \
    /usr/bin/baton-agent --config /etc/baton/agent.toml --controller-url "$BATON_URL" run &
agent_pid=$!
pids+=("$agent_pid")
wait_for "the agent's enrollment" test -s /var/lib/baton/agent/identity.json
alive "$agent_pid" baton-agent
expect /var/lib/baton/agent/identity.json 600 baton baton
batonctl submit --group verify-deb --kind noop --sleep 100ms --wait >/dev/null ||
    fail "a noop job did not succeed on the packaged agent"
ok "the agent enrolled from /etc/baton/enroll.token and ran a job"
kill -TERM "$agent_pid"
wait "$agent_pid" || fail "baton-agent did not exit 0 on SIGTERM"
kill -TERM "$ctl_pid"
wait "$ctl_pid" || fail "baton-controller did not exit 0 on SIGTERM"
pids=()
ok "both stopped cleanly on SIGTERM"
unset BATON_URL BATON_CA_FILE BATON_TOKEN

# --- systemd --------------------------------------------------------------
step "systemd-analyze verify (any output fails)"
for unit in baton-agent baton-controller; do
    out=$(systemd-analyze verify --man=no "$UNIT_DIR/$unit.service" 2>&1) || fail "$unit: verify failed: $out"
    [ -z "$out" ] || fail "$unit: systemd-analyze verify said: $out"
    ok "$unit.service"
done

step "systemd-analyze security (exposure <= $((EXPOSURE_THRESHOLD / 10)).$((EXPOSURE_THRESHOLD % 10)))"
for unit in baton-agent baton-controller; do
    set +e
    out=$(systemd-analyze security --offline=true --threshold="$EXPOSURE_THRESHOLD" \
        "$UNIT_DIR/$unit.service" 2>&1)
    code=$?
    set -e
    grep '✗' <<<"$out" || true
    score=$(grep -o 'Overall exposure level for .*' <<<"$out") || fail "$unit: no exposure score: $out"
    echo "    $score"
    [ "$code" = 0 ] || fail "$unit: exposure above the threshold ($EXPOSURE_THRESHOLD tenths)"
done

# --- lintian --------------------------------------------------------------
step "lintian (errors and warnings fail; overrides must all be used)"
for deb in "$agent_deb" "$controller_deb"; do
    # Everything, overrides and info tags included, for the log ...
    lintian --show-overrides --display-info "$deb" 2>&1 | grep -v '^running with root privileges' || true
    # ... and the verdict (--show-overrides would make overridden tags fail).
    set +e
    out=$(lintian --fail-on error,warning --display-info "$deb" 2>&1)
    code=$?
    set -e
    [ "$code" = 0 ] || fail "lintian: errors or warnings in $deb"
    if grep -Eq 'unused-override|mismatched-override' <<<"$out"; then
        fail "lintian: an override in $deb matches nothing: remove it"
    fi
    ok "$(basename "$deb")"
done

# --- purge ----------------------------------------------------------------
step "Purge"
rm -rf /etc/baton/tls # the administrator's files: not the packages' to remove
dpkg --purge baton-agent baton-controller
for path in /etc/baton /var/lib/baton /usr/bin/baton-agent /usr/bin/baton-controller \
    /usr/bin/batonctl "$UNIT_DIR/baton-agent.service" "$UNIT_DIR/baton-controller.service" \
    /etc/systemd/system/multi-user.target.wants/baton-agent.service \
    /etc/systemd/system/multi-user.target.wants/baton-controller.service; do
    if [ -e "$path" ] || [ -L "$path" ]; then fail "$path left after purge"; fi
done
ok "config, state, binaries and units gone"
getent passwd baton >/dev/null && ok "user baton kept (Debian practice: system users stay)"

step "Package sizes"
for deb in "$agent_deb" "$controller_deb"; do
    printf '    %-40s %6d KiB (installed %s KiB)\n' "$(basename "$deb")" \
        "$(($(stat -c %s "$deb") / 1024))" "$(dpkg-deb -f "$deb" Installed-Size)"
done
printf '\nverify-deb: OK\n'
