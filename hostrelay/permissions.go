package hostrelay

import (
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// RelayPermissions is the least a relay of host needs on a locked-down
// NATS: it publishes its host's reports, heartbeats, channel events and
// host usage, asks for the stream's info, and receives the replies (publish
// acks, stream info) on its own inbox. It may not create or change the
// stream: start a collector, or create it with the nats CLI, first.
// docs/nats.md lists the same subjects.
func RelayPermissions(host string) (publish, subscribe []string) {
	h := protocol.EscapeToken(host)
	return []string{
			protocol.SubjectPrefix + ".report." + h + ".>",
			protocol.SubjectPrefix + ".heartbeat." + h + ".>",
			protocol.SubjectPrefix + ".channel." + h + ".>",
			protocol.HostSubject(host),
			"$JS.API.STREAM.INFO." + natsutil.StreamName,
		}, []string{
			RelayInboxPrefix(host) + ".>",
		}
}
