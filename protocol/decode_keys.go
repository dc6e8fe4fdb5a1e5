package protocol

// The keys of an envelope and of a finding, as the fast decoder reads them.

// Envelope keys, numbered for a set of the keys seen so far.
const (
	keyV = iota
	keyKind
	keyRun
	keySeq
	keyTS
	keyCheck
	keyStatus
	keySummary
	keyFindings
	keyData
)

var envelopeNames = [...]string{"v", "kind", "run", "seq", "ts", "check", "status", "summary", "findings", "data"}

// keySet is the keys one kind of object may have.
type keySet struct {
	lookup  func([]byte) int // a key's number, or -1
	names   []string         // the keys by number
	allowed uint16           // the numbers that are allowed here
}

// An Ack is read as an Envelope that allows fewer keys.
var (
	guestKeys   = keySet{envelopeKey, envelopeNames[:], 1<<len(envelopeNames) - 1}
	ackKeys     = keySet{envelopeKey, envelopeNames[:], 1<<keyV | 1<<keyKind | 1<<keyRun | 1<<keySeq}
	findingKeys = keySet{findingKey, findingNames[:], 1<<len(findingNames) - 1}
)

func envelopeKey(k []byte) int {
	switch string(k) {
	case "v":
		return keyV
	case "kind":
		return keyKind
	case "run":
		return keyRun
	case "seq":
		return keySeq
	case "ts":
		return keyTS
	case "check":
		return keyCheck
	case "status":
		return keyStatus
	case "summary":
		return keySummary
	case "findings":
		return keyFindings
	case "data":
		return keyData
	}
	return -1
}

// Finding keys, numbered like the envelope keys.
const (
	keyCode = iota
	keySeverity
	keyMessage
	keySource
	keyProvider
	keyEventID
	keyUnit
	keyCount
	keyFirst
	keyLast
)

var findingNames = [...]string{"code", "severity", "message", "source", "provider", "event_id", "unit", "count", "first", "last"}

func findingKey(k []byte) int {
	switch string(k) {
	case "code":
		return keyCode
	case "severity":
		return keySeverity
	case "message":
		return keyMessage
	case "source":
		return keySource
	case "provider":
		return keyProvider
	case "event_id":
		return keyEventID
	case "unit":
		return keyUnit
	case "count":
		return keyCount
	case "first":
		return keyFirst
	case "last":
		return keyLast
	}
	return -1
}
