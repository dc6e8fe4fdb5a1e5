package cluster

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/collectord"
	"github.com/guestdiag/guestdiag/internal/natstest"
)

// limits is what must agree between the streams the nats CLI makes and
// those the collector makes: everything but the replicas and descriptions.
func limits(c jetstream.StreamConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: c.Name, Subjects: c.Subjects, Storage: c.Storage, Retention: c.Retention, Discard: c.Discard,
		MaxAge: c.MaxAge, MaxBytes: c.MaxBytes, MaxMsgs: c.MaxMsgs, MaxMsgsPerSubject: c.MaxMsgsPerSubject,
		MaxMsgSize: c.MaxMsgSize, Duplicates: c.Duplicates, AllowDirect: c.AllowDirect, AllowRollup: c.AllowRollup,
		DenyDelete: c.DenyDelete,
	}
}

func TestNATSCLICreatesTheStreamsAndBucketsTheCollectorWould(t *testing.T) {
	skipUnderRace(t)
	cli := natsCLI(t)

	// What a collector creates, on a single node.
	single := natstest.Start(t)
	nc, err := nats.Connect(single.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sjs, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	col := startCollector(t, nc, 1)
	waitFor(t, 3*time.Minute, "the collector's setup", func() bool { return col.get200(t, "/healthz") })
	want := map[string]jetstream.StreamConfig{}
	for _, name := range guestdiagStreams {
		info, err := streamInfo(t, sjs, name)
		if err != nil {
			t.Fatalf("%s on the single node: %v", name, err)
		}
		want[name] = limits(info.Config)
	}

	// The doc's commands, as the admin, on the cluster.
	c := startConfCluster(t)
	env := append(os.Environ(), "NATS_URL="+c.URLs(), "NATS_USER=admin", "NATS_PASSWORD="+passwords["admin"], "NATS_CA="+filepath.Join(c.dir, "ca.pem"))
	script, err := os.Open("testdata/create-r3.sh")
	if err != nil {
		t.Fatal(err)
	}
	defer script.Close()
	lines := bufio.NewScanner(script)
	for lines.Scan() {
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// The lines are plain commands; the shell only removes the quotes.
		cmd := exec.Command("sh", "-c", strings.Replace(line, "nats ", "\"$NATS_CLI\" ", 1))
		cmd.Env = append(env, "NATS_CLI="+cli)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}

	admin, err := jetstream.New(c.connect(t, "admin", ""))
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		for _, name := range guestdiagStreams {
			info, err := streamInfo(t, admin, name)
			if err != nil {
				t.Fatalf("%s %s: %v", name, when, err)
			}
			if got := limits(info.Config); !equalConfig(got, want[name]) {
				t.Errorf("%s %s:\n got %+v\nwant %+v (the collector's)", name, when, got, want[name])
			}
			if info.Config.Replicas != 3 {
				t.Errorf("%s %s: got %d replicas, want 3", name, when, info.Config.Replicas)
			}
		}
	}
	check("made by the nats CLI")
	// A collector with --replicas 3 takes them as they are.
	cc := startCollector(t, c.connect(t, "collector", collectord.CollectorInboxPrefix), 3)
	waitFor(t, 3*time.Minute, "the cluster collector's setup", func() bool { return cc.get200(t, "/healthz") })
	check("after a collector with --replicas 3 started")
}

func equalConfig(a, b jetstream.StreamConfig) bool {
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

func (r *running) get200(t *testing.T, path string) bool {
	code, _ := r.get(t, path)
	return code == 200
}
