# Sourced first by each end-to-end suite, as `. .../scripts/lib/suite.sh NAME` from tests/NAME/run.sh: what each
# of them needs around its own test — $root (the working directory) and $here (tests/NAME), `say`, the workspace
# build, a work directory, the processes it starts stopped on exit, the logs shown when it fails — and the one
# way to start the debug `dps` binary and read its startup line.
#
#   suite_build              the workspace build the tests already made (scripts/lib/build.sh)
#   suite_begin              make $work and stop everything on exit (SUITE_KEEP=1 keeps $work)
#   suite_track ID           stop process ID on exit (-PGID: its whole process group)
#   start_dps ARGS...        `dps serve --print-json --log-format json ARGS...` in the background; $dps_pid once
#                            its startup line is in $work/dps.out (its log: $work/dps.log)
#   dps_field NAME           a field of that startup line
#   free_port                a free 127.0.0.1 port
#   wait_port PORT [ID NAME] until 127.0.0.1:PORT accepts connections (10 s; fails early if ID exits)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tests/$1"
suite_name="$1"
cd "$root"
say() { echo "$suite_name/run.sh: $*"; }

dps="${DPS_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/dps}"
suite_ids=()

suite_build() {
    . "$root/scripts/lib/build.sh"
    build_workspace
}

suite_begin() {
    work="$(mktemp -d)"
    trap suite_end EXIT
}

suite_track() {
    suite_ids+=("$1")
}

suite_end() {
    local status=$? id
    # Processes a test itself started (receivers, stand-ins) write their IDs here.
    if [[ -f "$work/child.pids" ]]; then
        while read -r id; do suite_ids+=("$id"); done <"$work/child.pids"
    fi
    for id in "${suite_ids[@]}"; do kill -TERM -- "$id" 2>/dev/null || true; done
    for id in "${suite_ids[@]}"; do
        for _ in $(seq 50); do kill -0 -- "$id" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "$id" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        for log in "$work"/*.log; do
            [[ -f "$log" ]] || continue
            echo "---- $(basename "$log") (last 40 lines)"
            tail -n 40 "$log"
        done
    fi
    if [[ -n "${SUITE_KEEP:-}" ]]; then say "kept $work"; else rm -rf "$work"; fi
    exit "$status"
}

start_dps() {
    "$dps" serve --print-json --log-format json "$@" >"$work/dps.out" 2>"$work/dps.log" &
    dps_pid=$!
    suite_track "$dps_pid"
    for _ in $(seq 100); do
        [[ -s "$work/dps.out" ]] && return 0
        kill -0 "$dps_pid" 2>/dev/null || { say "dps exited before serving"; return 1; }
        sleep 0.1
    done
    say "dps printed no startup line"
    return 1
}

dps_field() {
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/dps.out" "$1"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        if [[ -n "${2:-}" ]] && ! kill -0 -- "$2" 2>/dev/null; then
            say "${3:-$2} exited before listening on $1"
            return 1
        fi
        sleep 0.1
    done
    say "${3:-something} is not listening on $1"
    return 1
}
