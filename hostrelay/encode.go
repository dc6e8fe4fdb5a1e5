package hostrelay

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// reportEncoder writes a protocol.Report for each line of one connection.
// It builds the JSON itself because encoding/json would compact and
// HTML-escape the guest's bytes, and the report must carry exactly the line
// that was validated. The fields that do not change during a connection are
// encoded once.
type reportEncoder struct {
	head []byte // {"v":1,…,"received":"
}

func newReportEncoder(host string, ch Channel) reportEncoder {
	b := []byte(`{"v":` + strconv.Itoa(protocol.Version) + `,"host":`)
	b = appendJSONString(b, host)
	b = append(b, `,"vm":`...)
	b = appendJSONString(b, ch.Name)
	if ch.UUID != "" {
		b = append(b, `,"uuid":`...)
		b = appendJSONString(b, ch.UUID)
	}
	b = append(b, `,"channel":`...)
	b = appendJSONString(b, ch.Path)
	b = append(b, `,"received":"`...)
	return reportEncoder{head: b}
}

// encode returns a new buffer, since the publisher keeps it until the
// PubAck arrives. guest must be one valid JSON value.
func (e reportEncoder) encode(received time.Time, guest []byte) []byte {
	b := make([]byte, 0, len(e.head)+len(time.RFC3339Nano)+len(`","guest":}`)+len(guest))
	b = append(b, e.head...)
	b = received.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","guest":`...)
	b = append(b, guest...)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
