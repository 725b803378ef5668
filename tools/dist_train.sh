#!/usr/bin/env bash
# Multi-GPU / multi-node training: bash tools/dist_train.sh CONFIG GPUS [train.py args]
# (multi-node variables: see tools/dist_launch.sh)
exec bash "$(dirname "$0")/dist_launch.sh" train.py "$2" "$1" "${@:3}"
