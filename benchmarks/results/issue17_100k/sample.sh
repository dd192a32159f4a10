#!/bin/bash
# usage: sample.sh PID LOG  -- samples VmHWM/VmRSS/RssAnon/RssFile of PID and its children every 5 s
pid=$1; log=$2
echo "utc pid VmHWM_kB VmRSS_kB RssAnon_kB RssFile_kB load1" > $log
while kill -0 $pid 2>/dev/null; do
  for p in $pid $(pgrep -P $pid); do
    s=/proc/$p/status
    [ -r $s ] || continue
    echo "$(date -u +%H:%M:%S) $p $(awk '/^VmHWM|^VmRSS|^RssAnon|^RssFile/{printf "%s ",$2}' $s)$(cut -d' ' -f1 /proc/loadavg)" >> $log
  done
  sleep 5
done
