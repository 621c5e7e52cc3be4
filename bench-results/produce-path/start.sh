#!/bin/sh
# start.sh BIN PORT NAME : a brook on 127.0.0.1:PORT with data in /tmp/produce17/NAME-data
BIN=$1; PORT=$2; NAME=$3
rm -rf /tmp/produce17/$NAME-data
nohup $BIN --override listeners=PLAINTEXT://127.0.0.1:$PORT --override log.dirs=/tmp/produce17/$NAME-data \
  --override metrics.listener=127.0.0.1:0 > /tmp/produce17/$NAME.log 2>&1 &
echo $! > /tmp/produce17/$NAME.pid
