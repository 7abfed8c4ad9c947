#!/usr/bin/env bash
# make demo: start holdfastd on its embedded default in a temporary data
# directory, register a File Server scenario over two local directories
# through the CLI, show its entities as the plugin reports them, print the
# activity log, and stop the daemon cleanly.
set -euo pipefail
bin=${1:-$(cd "$(dirname "$0")/.." && pwd)/bin}
work=$(mktemp -d /tmp/holdfast-demo.XXXXXX)
data=$work/data
daemon_pid=""
cleanup() {
  if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
hf() { printf '$ holdfast'; printf ' %q' "$@"; echo; "$bin/holdfast" --data "$data" "$@"; }

step "A master tree and an empty replica target"
mkdir -p "$work/master/projects/alpha" "$work/master/mail" "$work/replica"
for i in $(seq 1 20); do head -c $((i * 1024)) /dev/urandom >"$work/master/projects/alpha/file$i.bin"; done
echo "quarterly numbers" >"$work/master/mail/readme.txt"
echo "master root:    $work/master ($(find "$work/master" -type f | wc -l) files)"
echo "replica target: $work/replica"

step "Start holdfastd on its embedded default (data in $data, API on a free loopback port)"
"$bin/holdfastd" --data "$data" --listen 127.0.0.1:0 2>"$work/holdfastd.log" &
daemon_pid=$!
for _ in $(seq 1 100); do
  [[ -s $data/run/api.addr ]] && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/holdfastd.log"; echo "holdfastd exited"; exit 1; }
  sleep 0.1
done
[[ -s $data/run/api.addr ]] || { cat "$work/holdfastd.log"; echo "holdfastd did not start in 10 s"; exit 1; }
echo "holdfastd pid $daemon_pid listening on $(cat "$data/run/api.addr"); admin token in $data/admin.token (mode $(stat -c %a "$data/admin.token"))"

step "Plugins run out of process"
hf plugins list

step "A request without the administrator token is refused"
echo "\$ holdfast --token-file /dev/null scenario list"
"$bin/holdfast" --data "$data" --token-file /dev/null scenario list || true

step "Create a File Server scenario over the two directories"
hf scenario create "File Server - demo" --type fileserver --root "$work/master" --replica "localhost:$work/replica"

step "List and show it"
hf scenario list
hf scenario show "File Server - demo"

step "A bad definition is refused with a message code"
hf scenario create broken --type fileserver --root relative/dir --replica "$work/replica" || true

step "A plugin killed with SIGKILL is restarted by the daemon"
pid=$("$bin/holdfast" --data "$data" plugins list | awk '$1 == "fileserver" {print $6}')
echo "\$ kill -9 $pid"
kill -9 "$pid"
for _ in $(seq 1 100); do
  newpid=$("$bin/holdfast" --data "$data" plugins list | awk '$1 == "fileserver" && $5 == "running" {print $6}')
  [[ -n $newpid && $newpid != "$pid" ]] && break
  sleep 0.1
done
hf plugins list
hf scenario show "File Server - demo" >/dev/null && echo "(the restarted plugin serves again)"

step "Activity log"
hf log

step "Stop holdfastd"
kill -TERM "$daemon_pid"
wait "$daemon_pid"
echo "holdfastd exited with status $?"
daemon_pid=""
echo
echo "Demo finished. The daemon's own JSON log was $work/holdfastd.log (removed with the demo directory)."
