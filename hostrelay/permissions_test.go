package hostrelay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// lockedNATS starts a real server on which an admin may do anything and
// the relay of host A, known by an nkey, only what RelayPermissions("A")
// allows. It returns the server, the admin's JetStream and the file holding
// relay A's seed.
func lockedNATS(t *testing.T) (*server.Server, jetstream.JetStream, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(t.TempDir(), "relay-a.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	publish, subscribe := RelayPermissions("A")
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "admin", Password: "admin-pw"}},
		Nkeys: []*server.NkeyUser{{Nkey: pub, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: publish},
			Subscribe: &server.SubjectPermission{Allow: subscribe},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("admin", "admin-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The relay may not create the stream; the collector (here the admin)
	// does.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := natsutil.EnsureStream(ctx, js, natsutil.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return srv, js, seedFile
}

func TestLockedDownRelayPublishesOnlyItsOwnHost(t *testing.T) {
	srv, js, seedFile := lockedNATS(t)

	t.Run("host A's relay with A's key works", func(t *testing.T) {
		dir := socketDir(t)
		q := listenChannel(t, filepath.Join(dir, "domain-1-web01", channelFile))
		cfg := testConfig(dir)
		cfg.Host, cfg.NATSURL = "A", srv.ClientURL()
		cfg.NATSAuth = natsutil.Auth{NKeyFile: seedFile}
		cfg.HostUsageInterval = time.Hour // one message at start
		runRelay(t, cfg)
		g := q.accept(t)
		g.send(t, results(t, "r1", 1, 3)...)
		g.mustAck(t, "r1", 3)
		checkStreamHolds(t, js, "A:web01", "r1", 3)
		eventually(t, "host A's usage to be stored", func() bool {
			return len(streamMsgs(t, js, protocol.HostSubject("A"))) > 0
		})
	})

	t.Run("a relay that calls itself B with A's key is refused and says so", func(t *testing.T) {
		dir := socketDir(t)
		q := listenChannel(t, filepath.Join(dir, "domain-1-web02", channelFile))
		cfg := testConfig(dir)
		cfg.Host, cfg.NATSURL = "B", srv.ClientURL()
		cfg.NATSAuth = natsutil.Auth{NKeyFile: seedFile}
		log, logs := newTestLogger(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg, log) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})

		eventually(t, "a clear permission error in the log", func() bool {
			return len(logs.lines("nats_permission_denied")) > 0
		})
		if err := q.ln.SetDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if c, err := q.ln.Accept(); err == nil {
			c.Close()
			t.Error("the refused relay read a guest's channel: what it reads it can neither store nor acknowledge")
		}
		select {
		case err := <-done:
			t.Fatalf("the refused relay exited (%v); it should keep running and retrying, not crash", err)
		default:
		}
		for _, prefix := range []string{"guestdiag.report.B.", "guestdiag.heartbeat.B.", "guestdiag.channel.B.", "guestdiag.host.B"} {
			if msgs := streamMsgs(t, js, prefix); len(msgs) > 0 {
				t.Errorf("stream holds %d messages under %s, want none", len(msgs), prefix)
			}
		}
		t.Logf("logged: %s", logs.lines("nats_permission_denied")[0])
	})

	t.Run("A's key cannot publish host B's subjects even with A's inbox", func(t *testing.T) {
		denied := make(chan error, 1)
		opt, err := nats.NkeyOptionFromSeed(seedFile)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(srv.ClientURL(), opt, nats.CustomInboxPrefix(RelayInboxPrefix("A")),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case denied <- err:
				default:
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ajs, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := ajs.Publish(ctx, protocol.ReportSubject("B", "web01", "resources"), []byte("{}")); err == nil {
			t.Error("publishing under host B with A's key was stored")
		}
		select {
		case err := <-denied:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("server said %v, want a permissions violation", err)
			}
		case <-time.After(waitFor):
			t.Error("the server did not report a permissions violation")
		}
		if _, err := ajs.Publish(context.Background(), protocol.ReportSubject("A", "web01", "resources"), []byte("{}")); err != nil {
			t.Errorf("publishing under host A with A's key: %v", err)
		}
	})
}
