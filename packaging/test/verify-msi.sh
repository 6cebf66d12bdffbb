#!/usr/bin/env bash
# Build and check the Windows agent and its MSI on Linux (Debian 12, as root;
# CI runs it). What it does:
#   1. installs what is missing: gcc-mingw-w64-x86-64, wixl, msitools, wine64
#      (apt) and the x86_64-pc-windows-gnu Rust target (rustup);
#   2. cross-builds the release baton-agent.exe (.cargo/config.toml names the linker);
#   3. builds the MSI with wixl from packaging/msi/baton-agent.wxs, version from Cargo.toml;
#   4. checks its tables with `msiinfo export`: ServiceInstall (BatonAgent, auto
#      start, LocalSystem, "service run"), ServiceControl (start on install, stop
#      on install and uninstall, remove on uninstall), Upgrade (MajorUpgrade with
#      the fixed UpgradeCode), File (only the exe and the example config);
#   5. smoke-runs `baton-agent.exe --version` and `validate` (on the shipped
#      example config and on a sample one) under wine64, with a stub
#      bcryptprimitives.dll built from packaging/test/bcryptprimitives-stub.c
#      next to the exe in a scratch folder (Wine 8.0 lacks ProcessPrng; the stub
#      is never put into the MSI);
#   6. prints the .exe and .msi sizes.
# Output: target/msi/baton-agent-<version>-x64.msi. What Wine cannot show (the
# service under the real SCM, the ACL) is listed in packaging/README.md.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TARGET=x86_64-pc-windows-gnu
UPGRADE_CODE='{6B7FC148-29F6-4469-88CB-6C540FE03896}'

say() { printf '\n== %s\n' "$*"; }
die() { printf 'verify-msi: FAIL: %s\n' "$*" >&2; exit 1; }

say "Tools"
missing=()
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
command -v wixl >/dev/null || missing+=(wixl)
command -v msiinfo >/dev/null || missing+=(msitools)
[ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null || missing+=(wine64)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
WINE=/usr/lib/wine/wine64
[ -x "$WINE" ] || WINE=$(command -v wine64)
# Debian's wine64 without recommends puts wineserver in /usr/lib/wine/ only (the
# /usr/bin wrapper comes with the `wine` package): look there first, then PATH.
WINESERVER=
for c in /usr/lib/wine/wineserver64 /usr/lib/wine/wineserver "$(command -v wineserver || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then WINESERVER=$c; break; fi
done
[ -n "$WINESERVER" ] || die "wineserver not found (looked in /usr/lib/wine and on PATH)"
echo "wine: $WINE, wineserver: $WINESERVER"

say "Cross-build (release, $TARGET)"
cargo build --release --locked --target "$TARGET" -p baton-agent
EXE="target/$TARGET/release/baton-agent.exe"
[ -f "$EXE" ] || die "$EXE was not built"
# Only system DLLs: a mingw runtime DLL would be missing on a real host.
imports=$(x86_64-w64-mingw32-objdump -p "$EXE" | awk '/DLL Name:/ {print tolower($3)}' | sort -u)
echo "imports: $(echo "$imports" | tr '\n' ' ')"
if echo "$imports" | grep -E '^(libgcc|libstdc|libwinpthread)'; then
    die "the exe needs mingw runtime DLLs"
fi

VERSION=$(cargo metadata --no-deps --format-version 1 \
    | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="baton-agent"))')
# MSI versions are numeric major.minor.build: drop any pre-release suffix.
MSI_VERSION=${VERSION%%-*}
OUT=target/msi
MSI="$OUT/baton-agent-$VERSION-x64.msi"
mkdir -p "$OUT"

say "MSI $MSI (ProductVersion $MSI_VERSION)"
# wixl resolves Source paths relative to the current directory (not absolute).
wixl -a x64 \
    -D "Version=$MSI_VERSION" \
    -D "AgentExe=$EXE" \
    -D "ExampleConfig=packaging/msi/agent.example.toml" \
    -o "$MSI" packaging/msi/baton-agent.wxs
[ -s "$MSI" ] || die "wixl wrote no MSI"

say "MSI tables"
# Rows of table $1 (the three header lines dropped).
rows() { msiinfo export "$MSI" "$1" | tail -n +4 | tr -d '\r'; }
# Field $2 (1-based, tab-separated) of the row of table $1 whose first field is $3.
field() { rows "$1" | awk -F'\t' -v k="$3" -v f="$2" '$1 == k { print $f }'; }
expect() { # what, got, want
    if [ "$2" != "$3" ]; then die "$1: got '$2', want '$3'"; fi
    echo "ok  $1 = $3"
}
msiinfo export "$MSI" ServiceInstall
# ServiceInstall: Name DisplayName ServiceType StartType ErrorControl LoadOrderGroup
#                 Dependencies StartName Password Arguments Component_ Description
[ "$(rows ServiceInstall | wc -l)" = 1 ] || die "expected one ServiceInstall row"
expect "ServiceInstall.Name" "$(field ServiceInstall 2 BatonAgentService)" BatonAgent
expect "ServiceInstall.ServiceType (own process)" "$(field ServiceInstall 4 BatonAgentService)" 16
expect "ServiceInstall.StartType (auto)" "$(field ServiceInstall 5 BatonAgentService)" 2
expect "ServiceInstall.ErrorControl (normal)" "$(field ServiceInstall 6 BatonAgentService)" 1
expect "ServiceInstall.StartName" "$(field ServiceInstall 9 BatonAgentService)" LocalSystem
expect "ServiceInstall.Arguments" "$(field ServiceInstall 11 BatonAgentService)" "service run"
expect "ServiceInstall.Component_" "$(field ServiceInstall 12 BatonAgentService)" AgentExe
msiinfo export "$MSI" ServiceControl
# ServiceControl: Name Event Arguments Wait Component_. Event bits: 0x01 start at
# install, 0x02 stop at install, 0x20 stop at uninstall, 0x80 delete at uninstall.
expect "ServiceControl.Name" "$(field ServiceControl 2 BatonAgentControl)" BatonAgent
expect "ServiceControl.Event (start install, stop both, remove uninstall)" \
    "$(field ServiceControl 3 BatonAgentControl)" $((0x01 | 0x02 | 0x20 | 0x80))
expect "ServiceControl.Wait" "$(field ServiceControl 5 BatonAgentControl)" 1
msiinfo export "$MSI" Upgrade
# Upgrade: UpgradeCode VersionMin VersionMax Language Attributes Remove ActionProperty
expect "Upgrade rows" "$(rows Upgrade | wc -l)" 2
expect "Upgrade: older versions are removed" \
    "$(rows Upgrade | awk -F'\t' '$7 == "WIX_UPGRADE_DETECTED" { print $1 " max=" $3 }')" \
    "$UPGRADE_CODE max=$MSI_VERSION"
expect "Upgrade: newer versions are detected (downgrade refused)" \
    "$(rows Upgrade | awk -F'\t' '$7 == "WIX_DOWNGRADE_DETECTED" { print $1 " min=" $2 }')" \
    "$UPGRADE_CODE min=$MSI_VERSION"
expect "Property.UpgradeCode" "$(field Property 2 UpgradeCode)" "$UPGRADE_CODE"
expect "Property.ProductVersion" "$(field Property 2 ProductVersion)" "$MSI_VERSION"
expect "LaunchCondition (no downgrade)" \
    "$(rows LaunchCondition | cut -f1)" "NOT WIX_DOWNGRADE_DETECTED"
grep -qx RemoveExistingProducts <<<"$(rows InstallExecuteSequence | cut -f1)" \
    || die "RemoveExistingProducts is not scheduled"
echo "ok  RemoveExistingProducts scheduled"
expect "Files (exe and example only; no stub DLL)" \
    "$(rows File | cut -f3 | sort | tr '\n' ' ')" "agent.example.toml baton-agent.exe "
expect "Directory of the files" "$(field Directory 3 INSTALLDIR)" Baton
expect "Parent directory" "$(field Directory 2 INSTALLDIR)" ProgramFiles64Folder
msiinfo suminfo "$MSI" | grep -q '^Template: x64;' || die "the MSI is not x64"
echo "ok  Template x64"

say "Smoke test under Wine"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT  # cleanup() takes over below
x86_64-w64-mingw32-gcc -shared -O2 -Wall -Werror -o "$SCRATCH/bcryptprimitives.dll" \
    packaging/test/bcryptprimitives-stub.c -ladvapi32
cp "$EXE" "$SCRATCH/baton-agent.exe"
cp packaging/msi/agent.example.toml "$SCRATCH/agent.example.toml"
cat >"$SCRATCH/sample.toml" <<'EOF'
agent_id = "win-db1"
controller_url = "https://controller.example.org:8420"
state_dir = 'C:\baton-smoke\state'
groups = ["nightly"]
slots = 2
shutdown_grace = "45s"

[command]
allow = ['C:\Windows\System32\cmd.exe']
EOF
cat >"$SCRATCH/bad.toml" <<'EOF'
controller_url = "https://controller.example.org:8420"
state_dir = 'C:\baton-smoke\state'
slots = 0
EOF
export WINEPREFIX="$SCRATCH/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
# Create the prefix first, so its messages do not mix with the agent's output.
"$WINE" wineboot -i >/dev/null 2>&1 </dev/null || true
# ... and let it finish: an msiexec racing the prefix set-up rolls back.
"$WINESERVER" -w
wine() {
    local rc=0 out
    out=$(cd "$SCRATCH" && "$WINE" ./baton-agent.exe "$@" 2>&1) || rc=$?
    printf '%s\n' "$out" | tr -d '\r' | grep -v -e '^wine: ' -e 'fixme:' || true
    return "$rc"
}
out=$(wine --version) || die "--version failed: $out"
echo "$out"
expect "--version" "$out" "baton-agent $VERSION"
out=$(wine --config sample.toml validate) || die "validate sample failed: $out"
echo "$out"
echo "$out" | grep -q '^Config OK: agent_id=win-db1 controller=https://controller.example.org:8420' \
    || die "validate did not report the sample config"
echo "$out" | grep -q 'state_dir=C:\\baton-smoke\\state' || die "state_dir not kept as a Windows path"
echo "$out" | grep -q '^Identity: not enrolled yet' || die "validate did not report enrollment"
out=$(wine --config agent.example.toml validate) || die "the shipped example does not validate: $out"
echo "$out" | head -1
set +e
out=$(wine --config bad.toml validate); rc=$?
set -e
echo "$out"
expect "validate exit code on a bad config" "$rc" 78
echo "$out" | grep -q 'slots' || die "the error does not name the key"

say "MSI and service under Wine's service manager"
# Wine's msiexec and services.exe run the real install path: files, ServiceInstall,
# StartServices, then the service main, Stop -> the shutdown token -> drain, and
# uninstall. Not covered by Wine: ACLs (its icacls is a stub), failure actions.
cargo build --locked -p baton-controller
CTL=$ROOT/target/debug/baton-controller
BATONCTL=$ROOT/target/debug/batonctl
cp "$SCRATCH/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
cp "$MSI" "$WINEPREFIX/drive_c/baton-agent.msi"
# Wine stops services once no ordinary process is left: keep one for the stage.
"$WINE" cmd.exe /c "ping -n 600 127.0.0.1 >nul" >/dev/null 2>&1 </dev/null &
HOLDER=$!
CTL_PID=
cleanup() {
    if [ -n "$CTL_PID" ]; then kill "$CTL_PID" 2>/dev/null || true; fi
    kill "$HOLDER" 2>/dev/null || true
    "$WINESERVER" -k 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
# Output through a file, never a pipe: services started meanwhile inherit the
# handles and would hold a pipe open.
w() {
    "$WINE" "$@" >"$SCRATCH/w.out" 2>&1 </dev/null || true
    tr -d '\r' <"$SCRATCH/w.out" | grep -v -e '^wine: ' -e 'fixme:' || true
}
state() { w sc query BatonAgent | awk '/STATE/ { print $4 }'; }
wait_for() { # what, seconds, command...
    local what=$1 n=$2
    shift 2
    for _ in $(seq "$n"); do
        if "$@" >/dev/null 2>&1; then
            echo "ok  $what"
            return 0
        fi
        sleep 1
    done
    die "timed out waiting: $what"
}
is_state() { [ "$(state)" = "$1" ]; }
w msiexec /i 'C:\baton-agent.msi' /qn
PF="$WINEPREFIX/drive_c/Program Files/Baton"
[ -f "$PF/baton-agent.exe" ] && [ -f "$PF/agent.example.toml" ] \
    || die "the MSI did not install its files under Program Files\\Baton"
echo "ok  Program Files\\Baton: $(ls "$PF" | tr '\n' ' ')"
wait_for "service RUNNING after install (no config yet: it idles)" 30 is_state RUNNING
# %ProgramData% of Wine's services is C:\users\Public (C:\ProgramData on Windows).
logs_dir() { find "$WINEPREFIX/drive_c" -type d -path '*/Baton/logs' | head -1; }
have_logs() { [ -n "$(logs_dir)" ]; }
wait_for "the agent created %ProgramData%\\Baton" 30 have_logs
PD=$(dirname "$(logs_dir)")
PD_WIN=$(w winepath -w "$PD" | tail -1)
PD_WIN=${PD_WIN%\\Baton}
LOG="$PD/logs/agent.log"
wait_for "the log says the config is missing" 30 grep -q 'No config file' "$LOG"
for d in state dumps logs; do
    [ -d "$PD/$d" ] || die "$PD/$d was not created"
done
echo "ok  %ProgramData%\\Baton\\{state,dumps,logs} created by the agent ($PD)"

CTL_DIR="$SCRATCH/controller"
mkdir -p "$CTL_DIR"
printf 'listen = "127.0.0.1:0"\nstate_dir = "%s"\nallow_plain_http = true\n' \
    "$CTL_DIR/state" >"$CTL_DIR/c.toml"
ADMIN=$("$CTL" --config "$CTL_DIR/c.toml" init 2>/dev/null | tail -1)
"$CTL" --config "$CTL_DIR/c.toml" >"$CTL_DIR/log" 2>&1 &
CTL_PID=$!
wait_for "controller listening" 30 test -s "$CTL_DIR/state/listen.addr"
BATON_URL="http://$(cat "$CTL_DIR/state/listen.addr")"
export BATON_URL BATON_TOKEN="$ADMIN"
"$BATONCTL" enroll create --group winsmoke --expires 1h 2>/dev/null >"$PD/enroll.token"
{
    echo 'agent_id = "win-smoke"'
    echo "controller_url = \"$BATON_URL\""
    echo "enrollment_token_file = '$PD_WIN\\Baton\\enroll.token'"
    echo 'groups = ["winsmoke"]'
    echo 'shutdown_grace = "30s"'
} >"$PD/agent.toml"
w net stop BatonAgent
wait_for "service STOPPED" 30 is_state STOPPED
w net start BatonAgent
agent_online() { "$BATONCTL" agents | grep -q '^win-smoke .*online'; }
wait_for "the service enrolled and polls" 60 agent_online
[ -f "$PD/state/identity.json" ] || die "no identity.json under %ProgramData%\\Baton\\state"
"$BATONCTL" submit --group winsmoke --kind noop --sleep 5s
job_is() { "$BATONCTL" list | grep -q "^1 *$1 "; }
wait_for "job 1 running on the service" 30 job_is running
w sc stop BatonAgent
wait_for "service STOPPED after the drain" 60 is_state STOPPED
"$BATONCTL" list
job_is succeeded || die "the running job did not finish during the drain"
echo "ok  Stop drained: the job finished and was reported before the service stopped"
grep -q 'Service stop requested control=Stop' "$LOG" || die "no stop request in the log"
grep -q 'Service stopped code=0' "$LOG" || die "the service did not report a clean stop"
grep -q 'WIN32_EXIT_CODE *: 0 ' <<<"$(w sc query BatonAgent)" || die "non-zero service exit code"
echo "ok  service exit code 0"
w msiexec /x 'C:\baton-agent.msi' /qn
# Output captured first: with pipefail, `grep -q` closing the pipe early
# would turn the writer's SIGPIPE into the pipeline's status.
service_gone() { ! grep -q STATE <<<"$(w sc query BatonAgent)"; }
wait_for "service removed by the uninstall" 30 service_gone
[ -f "$PD/agent.toml" ] && [ -f "$PD/state/identity.json" ] \
    || die "the uninstall removed the config or the identity"
echo "ok  config and state kept after uninstall"

say "Sizes"
printf '%-44s %10s bytes (%s)\n' "$EXE" "$(stat -c %s "$EXE")" "$(du -h "$EXE" | cut -f1)"
printf '%-44s %10s bytes (%s)\n' "$MSI" "$(stat -c %s "$MSI")" "$(du -h "$MSI" | cut -f1)"
echo
echo "verify-msi: OK ($MSI)"
