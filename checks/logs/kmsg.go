package logs

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// kmsgRecord is one record of /dev/kmsg.
type kmsgRecord struct {
	Level    int // pri & 7
	Facility int // pri >> 3; 0 is the kernel, 1 (user) a write to /dev/kmsg
	Seq      uint64
	Usec     uint64 // since boot
	Message  string
	Dict     map[string]string // the continuation lines, KEY=value
}

var errKmsg = errors.New("malformed kmsg record")

// parseKmsg reads one record as read(2) returns it from /dev/kmsg:
//
//	pri,seq,usec,flags[,more];message\n[ KEY=value\n]...
//
// The kernel escapes unprintable bytes of the message, newlines included,
// as \xNN; they are unescaped here.
func parseKmsg(b []byte) (kmsgRecord, error) {
	var r kmsgRecord
	semi := bytes.IndexByte(b, ';')
	if semi < 0 {
		return r, errKmsg
	}
	fields := bytes.Split(b[:semi], []byte(","))
	if len(fields) < 4 {
		return r, errKmsg
	}
	pri, err := strconv.ParseUint(string(fields[0]), 10, 32)
	if err != nil {
		return r, errKmsg
	}
	if r.Seq, err = strconv.ParseUint(string(fields[1]), 10, 64); err != nil {
		return r, errKmsg
	}
	if r.Usec, err = strconv.ParseUint(string(fields[2]), 10, 64); err != nil {
		return r, errKmsg
	}
	r.Level, r.Facility = int(pri&7), int(pri>>3)
	rest := b[semi+1:]
	msg, dict, _ := bytes.Cut(rest, []byte("\n"))
	r.Message = unescapeKmsg(msg)
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
		r.Dict[string(k)] = unescapeKmsg(v)
	}
	return r, nil
}

func unescapeKmsg(b []byte) string {
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

// kmsgIdent splits "ident: message" or "ident[pid]: message", as
// programs that write to /dev/kmsg format their lines. The kernel's own
// records (facility 0) are left whole: "EXT4-fs error (device vda1): …"
// names no program.
func kmsgIdent(msg string) (ident string, pid int, rest string) {
	i := strings.IndexByte(msg, ':')
	if i <= 0 || i > 64 || strings.ContainsAny(msg[:i], " \t") {
		return "", 0, msg
	}
	ident = msg[:i]
	if j := strings.IndexByte(ident, '['); j > 0 && strings.HasSuffix(ident, "]") {
		pid, _ = strconv.Atoi(ident[j+1 : len(ident)-1])
		ident = ident[:j]
	}
	return ident, pid, strings.TrimLeft(msg[i+1:], " ")
}
