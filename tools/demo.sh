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
"$bin/holdfastd" --data "$data" --listen 127.0.0.1:0 --agents-listen 127.0.0.1:0 2>"$work/holdfastd.log" &
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
hf scenario create "File Server - demo" --type fileserver --root "$work/master" --replica "localhost:$work/replica" --assured-recovery

step "List and show it"
hf scenario list
hf scenario show "File Server - demo"

step "Run the scenario: it synchronizes, then replicates changes as they happen"
hf scenario run "File Server - demo"
wait_state() {
  for _ in $(seq 1 300); do
    "$bin/holdfast" --data "$data" scenario status "File Server - demo" | head -1 | grep -q ": $1\$" && return 0
    sleep 0.1
  done
  echo "scenario did not reach state $1 in 30 s"; "$bin/holdfast" --data "$data" scenario status "File Server - demo"; return 1
}
wait_state running
hf report synchronization "File Server - demo"
diff -r --exclude=.holdfast "$work/master" "$work/replica" && echo "(master and replica trees are identical)"

step "Change files on the master and watch them arrive on the replica"
start_ns=$(date +%s%N)
echo "minutes of the meeting" >"$work/master/projects/minutes.txt"
head -c 300000 /dev/urandom >>"$work/master/projects/alpha/file3.bin"
mv "$work/master/projects/alpha/file1.bin" "$work/master/mail/moved.bin"
rm "$work/master/projects/alpha/file2.bin"
mkdir -p "$work/master/new/deeper" && echo "fresh" >"$work/master/new/deeper/f.txt"
chmod 600 "$work/master/mail/readme.txt"
for _ in $(seq 1 200); do
  diff -r --exclude=.holdfast "$work/master" "$work/replica" >/dev/null 2>&1 && break
  sleep 0.05
done
if diff -r --exclude=.holdfast "$work/master" "$work/replica"; then
  echo "(all six changes arrived within $(( ($(date +%s%N) - start_ns) / 1000000 )) ms of the first write, as seen from here)"
else
  echo "replica still differs after 10 s"; exit 1
fi
hf scenario status "File Server - demo"

step "Suspend: the master spools, the replica stays as it was; resume drains the spool"
hf scenario suspend "File Server - demo"
for i in 1 2 3; do echo "written while suspended $i" >"$work/master/projects/suspended-$i.txt"; done
sleep 1
ls "$work/replica/projects" | grep -c suspended- | sed 's/^/files of the suspended period on the replica: /' || true
"$bin/holdfast" --data "$data" scenario status "File Server - demo" | grep -E 'phase|spool'
hf scenario resume "File Server - demo"
for _ in $(seq 1 200); do diff -r --exclude=.holdfast "$work/master" "$work/replica" >/dev/null 2>&1 && break; sleep 0.05; done
diff -r --exclude=.holdfast "$work/master" "$work/replica" && echo "(after resume the replica is identical again, without a resynchronization)"
hf report difference "File Server - demo"
hf report replication "File Server - demo"

step "Assured Recovery: the handler tests a writable view of a fresh snapshot while replication goes on"
hf scenario test "File Server - demo"
hf snapshot list "File Server - demo"

step "Back the scenario up: a job takes a consistent replica snapshot and writes it to the encrypted, deduplicating disk store"
wait_job() {
  for _ in $(seq 1 300); do
    "$bin/holdfast" --data "$data" job show "$1" | grep -q "state: *done" && return 0
    sleep 0.1
  done
  echo "job $1 did not finish in 30 s"; "$bin/holdfast" --data "$data" job show "$1"; return 1
}
# hf_job runs a command that queues a job, shows it, and leaves the job's
# number in $job.
hf_job() {
  printf '$ holdfast'; printf ' %q' "$@"; echo
  local out
  out=$("$bin/holdfast" --data "$data" --json "$@")
  job=$(printf '%s\n' "$out" | grep -o '"id": *[0-9]*' | head -1 | grep -o '[0-9]*$')
  echo "Job $job queued."
}
hf_job job submit --scenario "File Server - demo"
wait_job "$job"
hf job show "$job"
hf log --code HF-I5027 --limit 1

step "A file is deleted on the master; find it by name in the catalog and restore it to where it was"
rm "$work/master/projects/alpha/file5.bin"
echo "\$ rm master/projects/alpha/file5.bin"
hf restore find "file5.*"
session=$("$bin/holdfast" --data "$data" --json restore find "file5.bin" | grep -o '"session": *[0-9]*' | head -1 | grep -o '[0-9]*$')
hf_job restore run --session "$session" --path "$work/master/projects/alpha/file5.bin" --to original
wait_job "$job"
"$bin/holdfast" --data "$data" job show "$job" >"$work/job.txt"
head -7 "$work/job.txt"
ls -l "$work/master/projects/alpha/file5.bin"

step "Restore the whole session to another folder and compare it with the master"
hf_job restore run --session "$session" --to "$work/restored"
wait_job "$job"
diff -r "$work/master" "$work/restored" && echo "(the restored session and the master are identical)"

step "Data Rewind: bookmark, then a virus overwrites a file on the master and the damage replicates"
hf rewind bookmark "File Server - demo" "before the virus"
cat "$work/master/mail/readme.txt" | sed 's/^/master mail\/readme.txt before: /'
echo "ENCRYPTED BY A VIRUS - pay 1 BTC" >"$work/master/mail/readme.txt"
for _ in $(seq 1 200); do grep -q ENCRYPTED "$work/replica/mail/readme.txt" 2>/dev/null && break; sleep 0.05; done
sed 's/^/replica mail\/readme.txt now:  /' "$work/replica/mail/readme.txt"

step "Stop the scenario (so that the master's changes stop landing) and rewind the replica to the bookmark"
hf scenario stop "File Server - demo"
hf rewind list "File Server - demo" --limit 6
hf rewind to "File Server - demo" --bookmark "before the virus"
sed 's/^/replica mail\/readme.txt after the rewind: /' "$work/replica/mail/readme.txt"
grep -q "quarterly numbers" "$work/replica/mail/readme.txt" && echo "(the good content is back on the replica; copy it to the master from there)"

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
