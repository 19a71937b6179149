# Sourced by the device-lease scripts beside it (speed_lease.sh, ddp_lease.sh): with J (the JSON
# lines file) and L (the log) set, `run NAME CMD...` runs one benchmark and appends its JSON lines
# to $J tagged {"run": NAME, ...}, everything else (stderr included) to $L.
run() {
  echo "== $1 $(date +%T)" >> "$L"
  local name=$1; shift
  "$@" 2>> "$L" | while read -r line; do
    case "$line" in \{*) echo "{\"run\": \"$name\", ${line#\{}" >> "$J";; *) echo "$line" >> "$L";; esac
  done
}
