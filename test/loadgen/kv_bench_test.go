package loadgen

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

// BenchmarkKVUpdate is one collector's write of a VM record: a
// compare-and-set Update of a 2 KB value, one after the other as the
// collector applies results, on one server (R1) and on the three-node
// cluster (R3). Its latency bounds how many results one serial applier
// can store per second.
func BenchmarkKVUpdate(b *testing.B) {
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			url := ""
			if replicas == 1 {
				url = natstest.Start(b).ClientURL()
			} else {
				url = natstest.StartCluster(b, 3).URLs()
			}
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench", History: 1, Replicas: replicas, Storage: jetstream.FileStorage})
			if err != nil {
				b.Fatal(err)
			}
			val := make([]byte, 2048)
			const keys = 1000
			revs := make([]uint64, keys)
			for i := range keys {
				if revs[i], err = kv.Put(ctx, fmt.Sprintf("vm%d", i), val); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				k := i % keys
				if revs[k], err = kv.Update(ctx, fmt.Sprintf("vm%d", k), val, revs[k]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/update")
		})
	}
}
