#!/usr/bin/env bash
# torchrun launcher shared by dist_train.sh and dist_test.sh (MMEngine runs
# the processes). Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT
# (or PORT) on each node; PYTHON picks the interpreter.
#   bash tools/dist_launch.sh SCRIPT NPROC [script args...]
SCRIPT=$1
NPROC=$2
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHONPATH="$DIR/..":$PYTHONPATH \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-${MASTER_PORT:-29500}}" \
    --nproc_per_node="$NPROC" \
    "$DIR/$SCRIPT" "${@:3}" --launcher pytorch
