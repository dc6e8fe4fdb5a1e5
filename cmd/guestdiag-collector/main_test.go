package main

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/cli"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/natstest"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    collector.Config
		wantErr bool
	}{
		{"defaults", nil, collector.Config{
			NATSURL: nats.DefaultURL, Listen: collector.DefaultListen, Durable: collector.DefaultDurable,
			Bucket: collector.DefaultBucket, Replicas: 1, AckWait: collector.DefaultAckWait,
		}, false},
		{"every flag", []string{"--nats", "nats://n1:4222,nats://n2:4222", "--listen", ":9000", "--durable", "d", "--bucket", "b", "--replicas", "3", "--ack-wait", "1m"}, collector.Config{
			NATSURL: "nats://n1:4222,nats://n2:4222", Listen: ":9000", Durable: "d", Bucket: "b", Replicas: 3, AckWait: time.Minute,
		}, false},
		{"zero replicas", []string{"--replicas", "0"}, collector.Config{}, true},
		{"a stray argument", []string{"extra"}, collector.Config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := parseFlags(tt.args, &bytes.Buffer{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("config:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRunConsumesUntilCancelled(t *testing.T) {
	s := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--nats", s.ClientURL(), "--listen", "127.0.0.1:0", "--durable", "from-flags", "--log-level", "error"}, &stdout, &stderr)
	}()

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err := js.Consumer(cctx, "GUESTDIAG", "from-flags")
		ccancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("durable from --durable never appeared: %v", err)
		}
		<-tick.C
	}

	cancel()
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Errorf("exit code after cancel: got %d, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancel")
	}
}
