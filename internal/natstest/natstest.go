// Package natstest starts a real embedded NATS server with JetStream for tests.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/guestdiag/guestdiag/internal/natsutil"
)

// Start starts a real embedded NATS server with JetStream on a free
// loopback port for the duration of a test and returns it; s.ClientURL() is
// its address.
func Start(t testing.TB) *server.Server {
	t.Helper()
	s, err := natsutil.StartServer(natsutil.ServerConfig{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}
