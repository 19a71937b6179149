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

# For the sweep and submit leases (recipe_lease.sh, submit_lease.sh): `unpack TARBALL DIR` unpacks a
# carried tarball into DIR once (nothing when DIR/NAME, NAME the tarball's first entry, is there);
# `wait_while PATTERN S` waits up to S seconds while a process whose command line matches PATTERN runs.
unpack() {
  [ -f "$1" ] || return 0
  local top; top=$(tar tJf "$1" | head -1); top=${top%%/*}
  [ -e "$2/$top" ] || tar xJf "$1" -C "$2"
}
wait_while() {
  for _ in $(seq 1 "$2"); do pgrep -f "$1" > /dev/null || return 0; sleep 1; done
}
