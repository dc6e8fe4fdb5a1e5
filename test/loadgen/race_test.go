//go:build race

package loadgen

// underRace is set when the race detector is on: a three-node cluster's R3
// buckets and a fleet through them take minutes under it on two cores, so
// the cluster test skips and make test-vmlab runs it without it.
const underRace = true
