#!/bin/bash
# ab.sh SIZE BYTES DIR : workload 11 on base (A, 19201) and this branch (B, 19203), 3 rounds
cd /work/wt-produce
CMD="target/release/examples/brook-bench --bootstrap 127.0.0.1:19201 --label-a main@4eceaf0 --compare 127.0.0.1:19203 --label-b produce17 --workloads 11 --fanout-record-bytes $1 --produce-secs 5 --consume-bytes $2 --repeat 3 --limit-bytes 256M --fsync-secs 0.5 --out $3"
echo "\$ $CMD" > $3/run.log
$CMD >> $3/run.log 2>&1
