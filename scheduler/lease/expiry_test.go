package lease

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

// The local view of the lease must end before the server's expiry, which
// the server dates from when it stored the write: after the write was sent,
// perhaps before its acknowledgement came back.
func TestHeldEndsBeforeTheServerExpiresTheKey(t *testing.T) {
	_, _, js := natstest.JetStream(t)
	const ttl = 900 * time.Millisecond
	l, err := Open(t.Context(), js, Config{Name: "a", TTL: ttl}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	l.step(t.Context())
	if !l.Held() {
		t.Fatal("the lease is not held after taking it")
	}
	for l.Held() {
		if time.Since(sent) > 2*ttl {
			t.Fatal("the lease is still held two TTLs after its only write")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got, limit := time.Since(sent), ttl*2/3+50*time.Millisecond; got > limit {
		t.Errorf("got the lease held for %v after the write was sent, want at most %v (2/3 of the TTL)", got, limit)
	}
	// The server's key outlives the local view: no other instance can
	// have taken it while this one believed it held.
	if holder, err := l.Holder(t.Context()); err != nil || holder != "a" {
		t.Errorf("got holder %q (%v) when the local view ended, want the key still a's", holder, err)
	}
}
