package kmsg

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// Record is one record of /dev/kmsg.
type Record struct {
	Level    int // pri & 7
	Facility int // pri >> 3; 0 is the kernel, 1 (user) a write to /dev/kmsg
	Seq      uint64
	Usec     uint64 // since boot
	Message  string
	Dict     map[string]string // the continuation lines, KEY=value
}

// ErrMalformed is returned for a record that is not pri,seq,usec,flags;text.
var ErrMalformed = errors.New("malformed kmsg record")

// Parse reads one record as read(2) returns it from /dev/kmsg:
//
//	pri,seq,usec,flags[,more];message\n[ KEY=value\n]...
//
// The kernel escapes unprintable bytes of the message, newlines included,
// as \xNN; they are unescaped here.
func Parse(b []byte) (Record, error) {
	var r Record
	semi := bytes.IndexByte(b, ';')
	if semi < 0 {
		return r, ErrMalformed
	}
	fields := bytes.Split(b[:semi], []byte(","))
	if len(fields) < 4 {
		return r, ErrMalformed
	}
	pri, err := strconv.ParseUint(string(fields[0]), 10, 32)
	if err != nil {
		return r, ErrMalformed
	}
	if r.Seq, err = strconv.ParseUint(string(fields[1]), 10, 64); err != nil {
		return r, ErrMalformed
	}
	if r.Usec, err = strconv.ParseUint(string(fields[2]), 10, 64); err != nil {
		return r, ErrMalformed
	}
	r.Level, r.Facility = int(pri&7), int(pri>>3)
	rest := b[semi+1:]
	msg, dict, _ := bytes.Cut(rest, []byte("\n"))
	r.Message = unescape(msg)
	for _, l := range bytes.Split(dict, []byte("\n")) {
		if len(l) < 2 || l[0] != ' ' {
			continue
		}
		k, v, ok := bytes.Cut(l[1:], []byte("="))
		if !ok {
			continue
		}
		if r.Dict == nil {
			r.Dict = map[string]string{}
		}
		r.Dict[string(k)] = unescape(v)
	}
	return r, nil
}

func unescape(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	var s strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && b[i+1] == 'x' && isHex(b[i+2]) && isHex(b[i+3]) {
			v, _ := strconv.ParseUint(string(b[i+2:i+4]), 16, 8)
			s.WriteByte(byte(v))
			i += 3
			continue
		}
		s.WriteByte(b[i])
	}
	return s.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
