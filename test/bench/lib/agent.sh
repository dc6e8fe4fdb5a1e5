# Sourced by the agent benchmarks: builds the agent as `make build` builds
# what ships (no cgo, which would link libc dynamically, -trimpath,
# stripped) and starts it with no host, the config file $1 or, without one,
# every check but network (it pings its gateway and never runs outside a
# network namespace). Sets tmp (a scratch folder, removed on exit) and pid.
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

start_agent() {
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/guestdiag-agent" ./cmd/guestdiag-agent
	if [ -n "${1:-}" ]; then
		cp "$1" "$tmp/agent.yaml"
	else
		printf 'checks:\n  network: {enabled: false}\n' >"$tmp/agent.yaml"
	fi
	"$tmp/guestdiag-agent" config check "$tmp/agent.yaml" >/dev/null
	"$tmp/guestdiag-agent" --config "$tmp/agent.yaml" --state-dir "$tmp/state" 2>"$tmp/agent.log" &
	pid=$!
}
