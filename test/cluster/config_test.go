package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/internal/collectord"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestConfigGivesEachRelayUserExactlyItsHostsPermissions(t *testing.T) {
	o, err := server.ProcessConfigFile("testdata/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"h1", "h2"} {
		t.Run("relay of "+host+" gets what hostrelay.RelayPermissions says", func(t *testing.T) {
			i := slices.IndexFunc(o.Users, func(u *server.User) bool { return u.Username == "relay-"+host })
			if i < 0 {
				t.Fatalf("no user relay-%s", host)
			}
			u := o.Users[i]
			pub, sub := hostrelay.RelayPermissions(host)
			if got := u.Permissions.Publish.Allow; !slices.Equal(got, pub) {
				t.Errorf("publish: got %q, want %q", got, pub)
			}
			if got := u.Permissions.Subscribe.Allow; !slices.Equal(got, sub) {
				t.Errorf("subscribe: got %q, want %q", got, sub)
			}
			if u.Account == nil || u.Account.Name != account {
				t.Errorf("account: got %v, want %s", u.Account, account)
			}
		})
	}
}

func TestConfiguredClusterKeepsEachRelayToItsHost(t *testing.T) {
	c := startConfCluster(t)
	col := startCollector(t, c.connect(t, "collector", collectord.CollectorInboxPrefix), 3)
	admin, err := jetstream.New(c.connect(t, "admin", ""))
	if err != nil {
		t.Fatal(err)
	}
	// The collector creates the stream and the buckets, at R3.
	for _, name := range []string{"GUESTDIAG", "GUESTDIAG_TIMELINE", "KV_" + collector.DefaultBucket, "KV_" + collector.DefaultAlertBucket, "KV_" + collector.DefaultLivenessBucket} {
		var info *jetstream.StreamInfo
		waitFor(t, 3*time.Minute, name+" at R3 on three nodes", func() bool {
			info, err = streamInfo(t, admin, name)
			return err == nil && info.Cluster != nil && len(info.Cluster.Replicas) == 2
		})
		if info.Config.Replicas != 3 {
			t.Errorf("%s: got %d replicas, want 3", name, info.Config.Replicas)
		}
	}

	h1, err := jetstream.New(c.connect(t, "relay-h1", hostrelay.RelayInboxPrefix("h1")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Run("relay h1 stores under its own host", func(t *testing.T) {
		for seq := uint64(1); seq <= 2; seq++ {
			subject, body, id := report(t, "h1", "web1", "r1", seq, protocol.StatusCrit)
			if _, err := h1.Publish(ctx, subject, body, jetstream.WithMsgID(id)); err != nil {
				t.Fatalf("publish %s: %v", subject, err)
			}
		}
	})
	t.Run("relay h1 cannot publish under h2", func(t *testing.T) {
		subject, body, id := report(t, "h2", "web1", "r1", 1, protocol.StatusCrit)
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := h1.Publish(short, subject, body, jetstream.WithMsgID(id)); err == nil {
			t.Fatalf("publish %s as relay-h1: acknowledged, want refused", subject)
		}
		// Nor through core NATS, around JetStream's ack.
		nc := c.connect(t, "relay-h1", hostrelay.RelayInboxPrefix("h1"))
		if err := nc.Publish(subject, body); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the server's permission violation", func() bool {
			return errors.Is(nc.LastError(), nats.ErrPermissionViolation)
		})
		info, err := admin.Stream(ctx, "GUESTDIAG")
		if err != nil {
			t.Fatal(err)
		}
		si, err := info.Info(ctx, jetstream.WithSubjectFilter("guestdiag.report.h2.>"))
		if err != nil {
			t.Fatal(err)
		}
		if len(si.State.Subjects) != 0 {
			t.Errorf("the stream holds %v under h2, want nothing", si.State.Subjects)
		}
	})
	t.Run("relay h1 cannot read the stream through a consumer", func(t *testing.T) {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := h1.CreateConsumer(short, "GUESTDIAG", jetstream.ConsumerConfig{}); err == nil {
			t.Error("relay-h1 created a consumer, want refused")
		}
	})
	t.Run("the collector folds h1's reports and raises the alert", func(t *testing.T) {
		waitFor(t, time.Minute, "web1's firing alert", func() bool {
			return len(col.c.Alerts(collector.AlertFilter{State: collector.AlertFiring})) == 1
		})
		code, body := col.get(t, "/api/vms/web1")
		if code != 200 {
			t.Fatalf("GET /api/vms/web1: %d %s", code, body)
		}
		var vm struct {
			Host   string `json:"host"`
			Checks map[string]struct {
				Status string `json:"status"`
				Seq    uint64 `json:"seq"`
			} `json:"checks"`
		}
		if err := json.Unmarshal(body, &vm); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%s %s %d", vm.Host, vm.Checks["network"].Status, vm.Checks["network"].Seq); got != "h1 crit 2" {
			t.Errorf("web1 in the API: got %q, want %q", got, "h1 crit 2")
		}
	})
	t.Run("the scheduler reads host usage and publishes plans", func(t *testing.T) {
		js, err := jetstream.New(c.connect(t, "scheduler", "_GDINBOX.scheduler"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h1.Publish(ctx, protocol.HostSubject("h1"), []byte(`{"v":1,"host":"h1"}`)); err != nil {
			t.Fatal(err)
		}
		cons, err := js.OrderedConsumer(ctx, "GUESTDIAG", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"guestdiag.host.>"}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("reading host usage: %v", err)
		}
		if !strings.Contains(string(m.Data()), `"h1"`) {
			t.Errorf("host usage: got %s", m.Data())
		}
		if _, err := js.Publish(ctx, protocol.PlanSubject, []byte(`{"v":1}`)); err != nil {
			t.Errorf("publish a plan: %v", err)
		}
	})
}
