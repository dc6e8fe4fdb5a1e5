// Package natstest starts a real embedded NATS server with JetStream for tests.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// Connect connects to s for the duration of a test.
func Connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream starts a server and returns a connection to it and a JetStream
// handle on that connection, what most tests that publish as a relay does
// need.
func JetStream(t testing.TB) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	s := Start(t)
	nc := Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return s, nc, js
}
