# Helpers for L1 payloads (sourced before the payload; busybox ash).
#
# A VM under test runs in the background with its console on files: stdin from a fifo (held open on
# fd 7 so the VMM never sees EOF between our lines), stdout to $LAB_D/NAME.out, stderr to NAME.err.
# Waiting functions poll those files and mirror new complete lines to L1's console as "L2|NAME| ...",
# so the host sees the guest live and can tell guest lines from L1's own (a guest panic is not L1's).
# One VM at a time. Times are L1 uptime seconds from /proc/uptime.
# LAB_D may be set beforehand when a payload runs outside the lab (the benchmark's host path).

LAB_D=${LAB_D:-/tmp/lab}
mkdir -p "$LAB_D"

lab_marker() { echo "IRONVIRT-LAB: $*"; }

# Seconds since L1 boot, with two decimals.
lab_now() { read -r _up _rest < /proc/uptime; echo "$_up"; }
lab_secs() { read -r _up _rest < /proc/uptime; echo "${_up%.*}"; }
# lab_elapsed T0 T1: T1 - T0 with two decimals (busybox awk does float arithmetic, ash does not).
lab_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

lab__mirror() {
    _n=$(wc -l < "$LAB_D/$1.out")
    if [ "$_n" -gt "$LAB_MIRRORED" ]; then
        head -n "$_n" "$LAB_D/$1.out" | tail -n +$((LAB_MIRRORED + 1)) | tr -d '\r' |
            while IFS= read -r _l; do echo "L2|$1| $_l"; done
        LAB_MIRRORED=$_n
    fi
}

# lab_vm_start NAME CMD [ARGS...]: start a VMM; sets LAB_VM_T0 (L1 uptime at start).
lab_vm_start() {
    _name=$1
    shift
    rm -f "$LAB_D/$_name".*
    mkfifo "$LAB_D/$_name.in"
    : > "$LAB_D/$_name.out"
    exec 7<> "$LAB_D/$_name.in"
    LAB_MIRRORED=0
    LAB_VM_T0=$(lab_now)
    (
        "$@" < "$LAB_D/$_name.in" > "$LAB_D/$_name.out" 2> "$LAB_D/$_name.err" &
        echo $! > "$LAB_D/$_name.pid"
        wait $!
        echo $? > "$LAB_D/$_name.rc.tmp"
        mv "$LAB_D/$_name.rc.tmp" "$LAB_D/$_name.rc"
    ) &
}

# lab_vm_wait_for NAME REGEX TIMEOUT [COUNT]: wait until COUNT (default 1) output lines match REGEX.
# Returns 0 when seen (LAB_WAIT_T = L1 uptime then), 1 if the VMM exited first, 2 on timeout.
lab_vm_wait_for() {
    _deadline=$(($(lab_secs) + $3))
    while :; do
        _exited=
        [ -e "$LAB_D/$1.rc" ] && _exited=1
        _seen=$(grep -cE "$2" "$LAB_D/$1.out")
        [ "$_seen" -ge "${4:-1}" ] && LAB_WAIT_T=$(lab_now)
        lab__mirror "$1"
        [ "$_seen" -ge "${4:-1}" ] && return 0
        [ -n "$_exited" ] && return 1
        [ "$(lab_secs)" -ge "$_deadline" ] && return 2
        sleep 0.2
    done
}

# lab_vm_send NAME LINE: type LINE (plus newline) on the VM's console.
lab_vm_send() { printf '%s\n' "$2" >&7; }

# lab_vm_wait_exit NAME TIMEOUT: wait for the VMM to exit; kill it on timeout. Sets LAB_VM_RC
# (124 after a timeout) and LAB_VM_T1.
lab_vm_wait_exit() {
    _deadline=$(($(lab_secs) + $2))
    while [ ! -e "$LAB_D/$1.rc" ]; do
        lab__mirror "$1"
        if [ "$(lab_secs)" -ge "$_deadline" ]; then
            kill -9 "$(cat "$LAB_D/$1.pid")" 2> /dev/null
            sleep 0.5
            break
        fi
        sleep 0.2
    done
    LAB_VM_T1=$(lab_now)
    lab__mirror "$1"
    if [ -e "$LAB_D/$1.rc" ]; then LAB_VM_RC=$(cat "$LAB_D/$1.rc"); else LAB_VM_RC=124; fi
    exec 7>&-
    return 0
}

# lab_vm_stderr NAME: print the VMM's stderr prefixed, for diagnosis on the host.
lab_vm_stderr() { tr -d '\r' < "$LAB_D/$1.err" | while IFS= read -r _l; do echo "L2ERR|$1| $_l"; done; }
