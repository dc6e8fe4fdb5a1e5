package collector

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
)

// fakeKV is the part of a KV bucket that store and watch use. Any other
// method panics through the nil embedded interface, which is what a test
// wants to hear about.
type fakeKV struct {
	jetstream.KeyValue

	mu       sync.Mutex
	records  map[string]*fakeEntry
	conflict bool        // every write fails as if another collector won
	writes   []time.Time // when each write was tried
	onWrite  func(n int) // called with the number of writes so far
	watchers []*fakeWatcher
}

func newFakeKV() *fakeKV { return &fakeKV{records: make(map[string]*fakeEntry)} }

func (kv *fakeKV) put(t *testing.T, key string, v VM) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	rev := uint64(1)
	if e, ok := kv.records[key]; ok {
		rev = e.rev + 1
	}
	kv.records[key] = &fakeEntry{key: key, value: b, rev: rev, op: jetstream.KeyValuePut}
}

func (kv *fakeKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if e, ok := kv.records[key]; ok {
		return e, nil
	}
	return nil, jetstream.ErrKeyNotFound
}

func (kv *fakeKV) Create(ctx context.Context, key string, value []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	return kv.write(key, value, 0)
}

func (kv *fakeKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	return kv.write(key, value, rev)
}

func (kv *fakeKV) write(key string, value []byte, rev uint64) (uint64, error) {
	kv.mu.Lock()
	kv.writes = append(kv.writes, time.Now())
	n, onWrite := len(kv.writes), kv.onWrite
	cur := kv.records[key]
	var err error
	switch {
	case kv.conflict, cur == nil && rev != 0, cur != nil && cur.rev != rev:
		err = jetstream.ErrKeyExists
	default:
		kv.records[key] = &fakeEntry{key: key, value: value, rev: rev + 1, op: jetstream.KeyValuePut}
	}
	kv.mu.Unlock()
	if onWrite != nil {
		onWrite(n)
	}
	if err != nil {
		return 0, err
	}
	return rev + 1, nil
}

// WatchAll hands out the watchers queued in kv.watchers, one per call.
func (kv *fakeKV) WatchAll(ctx context.Context, _ ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	w := kv.watchers[0]
	kv.watchers = kv.watchers[1:]
	return w, nil
}

type fakeWatcher struct{ updates chan jetstream.KeyValueEntry }

func (w *fakeWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.updates }
func (w *fakeWatcher) Stop() error                             { return nil }

type fakeEntry struct {
	key   string
	value []byte
	rev   uint64
	op    jetstream.KeyValueOp
}

func (e *fakeEntry) Bucket() string                  { return DefaultBucket }
func (e *fakeEntry) Key() string                     { return e.key }
func (e *fakeEntry) Value() []byte                   { return e.value }
func (e *fakeEntry) Revision() uint64                { return e.rev }
func (e *fakeEntry) Created() time.Time              { return time.Time{} }
func (e *fakeEntry) Delta() uint64                   { return 0 }
func (e *fakeEntry) Operation() jetstream.KeyValueOp { return e.op }

// fakeMsg is a stream message as handle sees it.
type fakeMsg struct {
	jetstream.Msg
	subject string
	data    []byte
	seq     uint64
	settled string // "ack", "nak" or "term"
}

func (m *fakeMsg) Subject() string { return m.subject }
func (m *fakeMsg) Data() []byte    { return m.data }
func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}
func (m *fakeMsg) Ack() error                         { m.settled = "ack"; return nil }
func (m *fakeMsg) Nak() error                         { m.settled = "nak"; return nil }
func (m *fakeMsg) NakWithDelay(time.Duration) error   { m.settled = "nak"; return nil }
func (m *fakeMsg) Term() error                        { m.settled = "term"; return nil }
func (m *fakeMsg) TermWithReason(reason string) error { m.settled = "term"; return nil }

// resultMsg is a relay report of a result of check for web1 on h1.
func resultMsg(t *testing.T, check string, seq uint64) *fakeMsg {
	t.Helper()
	e := protocol.Envelope{V: 1, Kind: protocol.KindResult, Run: "run1", Seq: seq, TS: t0, Check: check, Status: protocol.StatusOK}
	line, err := protocol.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	r := protocol.Report{V: 1, Host: "h1", VM: "web1", Received: t0, Guest: line[:len(line)-1]}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMsg{subject: protocol.ReportSubject("h1", "web1", check), data: b, seq: seq}
}

// fakeJS takes the timeline entries and alerts a collector publishes and
// forgets them; a test on fakeKV looks at the VM records only.
type fakeJS struct{ jetstream.JetStream }

func (fakeJS) Publish(ctx context.Context, subject string, data []byte, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return &jetstream.PubAck{Stream: "FAKE"}, nil
}

func fakeBackend(kv *fakeKV) *backend { return &backend{vms: kv, js: fakeJS{}} }
