#!/bin/bash
# perfrun.sh PORT PID OUT : run workload 11 (100 B) against 127.0.0.1:PORT and perf-record broker PID for 3 s of its produce phase
PORT=$1; PID=$2; OUT=$3
cd /work/wt-produce
: > $OUT.bench.log
target/release/examples/brook-bench --bootstrap 127.0.0.1:$PORT --workloads 11 --fanout-record-bytes 100 \
  --produce-secs 10 --consume-bytes 800M --limit-bytes 64M --fsync-secs 0.2 --out - >> $OUT.bench.log 2>&1 &
B=$!
for i in $(seq 1 300); do grep -q 'workload 11 (' $OUT.bench.log && break; kill -0 $B 2>/dev/null || exit 1; sleep 0.2; done
sleep 0.8
timeout 20 perf record -F 999 -g -p $PID -o $OUT.data -- sleep 3.5 2> $OUT.perf.err
wait $B
