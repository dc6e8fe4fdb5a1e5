package logs

import (
	"bytes"
	"os"
	"testing"
)

func TestParseLogsKmsg(t *testing.T) {
	b, err := os.ReadFile("testdata/kmsg.txt")
	if err != nil {
		t.Fatal(err)
	}
	recs := bytes.Split(b, []byte("\n\n"))
	tests := []struct {
		name       string
		level, fac int
		seq, usec  uint64
		msg        string
		dict       map[string]string
	}{
		{"an info record", 6, 0, 339, 5140900, "NET: Registered PF_INET6 protocol family", nil},
		{"an error record", 3, 0, 512, 8123456789, "EXT4-fs error (device vda1): ext4_find_entry:1456: inode #2: comm nginx: reading directory lblock 0", nil},
		{"a record with dictionary lines", 3, 0, 600, 9000000000, "I/O error, dev vda, sector 2048 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 2", map[string]string{"SUBSYSTEM": "block", "DEVICE": "b253:0"}},
		{"a record written by a program", 3, 1, 700, 9100000000, "guestdiag-test: disk failure", nil},
		{"a record with a caller and escapes", 4, 1, 701, 9200000000, "myapp[1204]: colour \x1b[31mred\x1b[0m\nsecond line", nil},
		{"an emergency", 0, 0, 703, 9300000000, "Kernel panic - not syncing: Fatal exception in interrupt", nil},
	}
	if len(recs) != len(tests) {
		t.Fatalf("%d records, %d cases", len(recs), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseKmsg(recs[i])
			if err != nil {
				t.Fatal(err)
			}
			if r.Level != tt.level || r.Facility != tt.fac || r.Seq != tt.seq || r.Usec != tt.usec || r.Message != tt.msg || len(r.Dict) != len(tt.dict) {
				t.Errorf("got %+v", r)
			}
			for k, v := range tt.dict {
				if r.Dict[k] != v {
					t.Errorf("dict %s = %q, want %q", k, r.Dict[k], v)
				}
			}
		})
	}
	for _, bad := range []string{"", "garbage", "6,1;no fields", "x,1,2,-;bad pri"} {
		if _, err := parseKmsg([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestLogsKmsgIdent(t *testing.T) {
	tests := []struct {
		name, in, ident, rest string
		pid                   int
	}{
		{"ident and message", "guestdiag-test: disk failure", "guestdiag-test", "disk failure", 0},
		{"ident with pid", "myapp[1204]: boom", "myapp", "boom", 1204},
		{"no ident", "disk failure: sector 7", "", "disk failure: sector 7", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ident, pid, rest := kmsgIdent(tt.in)
			if ident != tt.ident || pid != tt.pid || rest != tt.rest {
				t.Errorf("got %q %d %q", ident, pid, rest)
			}
		})
	}
}
