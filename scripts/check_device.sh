#!/usr/bin/env bash
# The product's own paths on a device, end to end through the command line, for both engines: a detached runner
# (its own process, a socket), ctl status / pause / lr / resume / stop, attach --json (steps, and evaluations, whose
# patches cross the socket), a headless run to its end with --export-to, and the exported file measured again on the
# CPU; first, Miniproject_2's block tests with their tensors on the device (needs pytest). Needs no dashboard packages.
#
#   DEVICE=cuda OUT=/some/folder bash scripts/check_device.sh     # on a GPU machine
#   DEVICE=cpu  OUT=/tmp/check   bash scripts/check_device.sh     # the same steps here
#
# Prints one "ok"/"FAIL" line per check and exits with the number of failures; logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to a folder for logs}"
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
RUNS="$OUT/runs"
mkdir -p "$OUT"
FAILS=0
trap 'pkill -f "sessions.runner.*$RUNS" 2> /dev/null' EXIT  # a run whose stop check failed must not train on
cli() { "$PY" -m tui.cli "$@" --runs-dir "$RUNS"; }
check() {  # check NAME COMMAND...: runs it, logs its output, ok when it exits 0
    local name=$1; shift
    if "$@" > "$OUT/$name.log" 2>&1; then echo "ok   $name"; else echo "FAIL $name (exit $?): $(tail -n 3 "$OUT/$name.log" | tr '\n' ' ')"; FAILS=$((FAILS + 1)); fi
}
field() {  # field RUN NAME: one field of what ctl status reports
    cli ctl "$1" status --json | "$PY" -c "import json, sys; print(json.load(sys.stdin).get('$2', '?'))"
}

check "mp2_blocks_$DEVICE" env N2N_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -p no:cacheprovider tests/test_mp2_blocks.py

for E in ${ENGINES:-1 2}; do
    SMALL="--engine $E --device $DEVICE --subset 2000 --n-val 200 --batch-size 32 --data sample"
    # a detached runner steered from other processes (more epochs than it can finish on a GPU before the stop)
    ID=$(cli train $SMALL --epochs 2000 --eval-every 40 --detach 2> "$OUT/detach_$E.err" | tail -n 1)
    if [ -z "$ID" ]; then echo "FAIL detach engine $E: $(cat "$OUT/detach_$E.err")"; FAILS=$((FAILS + 1)); continue; fi
    sleep 8
    check "status_$E" cli ctl "$ID" status
    check "device_$E" test "$(field "$ID" device)" = "$DEVICE"
    check "pause_$E" cli ctl "$ID" pause
    check "paused_$E" test "$(field "$ID" state)" = paused
    check "lr_$E" cli ctl "$ID" lr 5e-4
    check "resume_$E" cli ctl "$ID" resume
    check "attach_json_$E" bash -c "timeout 30 $PY -m tui.cli attach $ID --json --runs-dir $RUNS | head -n 20 | grep -q '\"event\": \"step\"'"
    check "attach_eval_$E" bash -c "timeout 30 $PY -m tui.cli attach $ID --json --runs-dir $RUNS | grep -m 1 -q '\"event\": \"eval\"'"
    check "stop_$E" cli ctl "$ID" stop
    sleep 3
    check "runs_$E" bash -c "$PY -m tui.cli runs --runs-dir $RUNS | grep $ID"
    check "stopped_$E" grep -q "stopped by a viewer" "$RUNS/$ID/runner.log"
    # a headless run to its end, exported, and the exported file measured again on the CPU
    check "headless_$E" cli train $SMALL --epochs 1 --headless --export-to "$OUT/best_$E.pth"
    check "reload_cpu_$E" cli eval --engine "$E" --weights "$OUT/best_$E.pth" --device cpu --n-val 200 --data sample
done
echo "failures: $FAILS"
exit "$FAILS"
