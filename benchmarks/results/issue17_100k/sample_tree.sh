#!/bin/bash
# usage: sample_tree.sh PID LOG -- every 5 s, VmHWM/VmRSS/RssAnon/RssFile (kB) of PID and all its descendants
pid=$1; log=$2
echo "utc pid VmHWM_kB VmRSS_kB RssAnon_kB RssFile_kB load1" > $log
desc() { local p=$1; echo $p; for c in $(pgrep -P $p); do desc $c; done; }
while kill -0 $pid 2>/dev/null; do
  for p in $(desc $pid); do
    s=/proc/$p/status
    [ -r $s ] || continue
    echo "$(date -u +%H:%M:%S) $p $(awk '/^VmHWM|^VmRSS|^RssAnon|^RssFile/{printf "%s ",$2}' $s)$(cut -d' ' -f1 /proc/loadavg)" >> $log
  done
  sleep 5
done
