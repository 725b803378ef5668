#!/usr/bin/env bash
# Multi-GPU / multi-node testing: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# (multi-node variables: see tools/dist_launch.sh)
exec bash "$(dirname "$0")/dist_launch.sh" test.py "$3" "$1" "$2" "${@:4}"
