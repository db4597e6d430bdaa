#!/usr/bin/env bash
# Runs one command with the rest of the machine paused, for wall-clock measurements (thread
# scaling above all) on a shared build machine: every other build, test and Python process
# (cargo, rustc, the C toolchain, test binaries under a target/ folder, python) gets SIGSTOP,
# the command runs, and they all get SIGCONT again, also when the command fails or is
# interrupted. Keep the command short (a few minutes at most): paused tests with deadlines can
# fail when they resume. Usage: benches/idle_window.sh CMD [ARGS...]
set -u
self=$$
# Our own ancestors must keep running (the shell that called us waits on us).
keep=" $self "
p=$self
while [ "$p" -gt 1 ]; do
  p=$(ps -o ppid= -p "$p" | tr -d ' ')
  [ -n "$p" ] || break
  keep="$keep$p "
done
paused=()
for pid in $(ps -eo pid=,comm=,args= | awk '$2 ~ /^(cargo|rustc|cc1|cc1plus|cc|gcc|ld|collect2|python3?|pytest|infer|nextest)/ || $3 ~ /(^|\/)target\/(debug|release)\// {print $1}'); do
  case "$keep" in *" $pid "*) continue;; esac
  kill -STOP "$pid" 2>/dev/null && paused+=("$pid")
done
resume() { for pid in "${paused[@]}"; do kill -CONT "$pid" 2>/dev/null; done; }
trap resume EXIT INT TERM
echo "idle_window: paused ${#paused[@]} processes; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
sleep 3
"$@"
