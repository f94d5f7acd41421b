# Sourced by the stand-ins: record the call, honour an injected failure.
standin_name=$(basename "$0")
printf '%s %s %s\n' "$(hostname)" "$standin_name" "$*" >> "${FERRY_STANDIN_LOG:-/dev/null}"
if [ -f /etc/ferry-test-fail ] && grep -qx "$standin_name" /etc/ferry-test-fail; then
  echo "$standin_name: injected failure" >&2
  exit 1
fi
fail() { echo "$standin_name (stand-in): $*" >&2; exit 1; }
