#!/bin/bash
# run a command with this worktree's code on /work/main's virtualenv: ./t pytest tests/test_x.py
cd /tmp/wt-plugin
export PYTHONPATH=/tmp/wt-plugin/src:/tmp/wt-plugin
export PATH=/work/main/.venv/bin:$PATH
exec "$@"
