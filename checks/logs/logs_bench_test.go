package logs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchFile writes a syslog file of n lines that looks like a busy
// server's: cron, sshd, systemd and nginx chatter, and about 3% errors
// that repeat with varying numbers, so that they aggregate.
func benchFile(b *testing.B, n int) (string, int64) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "syslog")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	normal := []string{
		"CRON[%d]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
		"systemd[1]: Started Session %d of User admin.",
		"sshd[%d]: Accepted publickey for admin from 10.0.3.17 port 51234 ssh2: ED25519 SHA256:Qw9pXk1mYtQ2",
		"nginx[%d]: 10.0.3.17 - - \"GET /api/v1/orders?page=2 HTTP/1.1\" 200 5123 \"-\" \"curl/8.5.0\"",
		"kernel: [%d.123456] IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
		"systemd-logind[%d]: New session 42 of user admin.",
		"dhclient[%d]: DHCPREQUEST for 10.0.3.21 on eth0 to 10.0.3.1 port 67",
		"postfix/qmgr[%d]: 4F2A1C0D3E: from=<root@web1>, size=1234, nrcpt=1 (queue active)",
		"rsyslogd[%d]: imuxsock: Acquired UNIX socket '/run/systemd/journal/syslog' (fd 3) from systemd.",
		"snapd[%d]: storehelpers.go:773: cannot refresh: snap has no updates available: \"core22\", \"lxd\"",
	}
	errs := []string{
		"nginx[%d]: 2024/06/10 06:13:20 [error] 812#812: *4821 connect() failed (111: Connection refused) while connecting to upstream",
		"kernel: [%d.654321] EXT4-fs error (device vda1): ext4_find_entry:1456: inode #2: comm nginx: reading directory lblock 0",
		"app[%d]: payment worker failed: timeout after 30s talking to db-7",
		"systemd[1]: backup.service: Failed with result 'exit-code' (run %d).",
	}
	var size int64
	for i := range n {
		format := normal[i%len(normal)]
		if i%33 == 7 {
			format = errs[(i/33)%len(errs)]
		}
		line := fmt.Sprintf("Jun 10 06:%02d:%02d web1 "+format+"\n", (i/60)%60, i%60, 1000+i%50000)
		w.WriteString(line)
		size += int64(len(line))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return path, size
}

// BenchmarkLogsFilePipeline reads a syslog file through the file reader,
// the error filter and the aggregator, the path every followed line takes.
// The rate cap is lifted so that every error is normalized and grouped.
func BenchmarkLogsFilePipeline(b *testing.B) {
	const lines = 200_000
	path, size := benchFile(b, lines)
	cfg := DefaultConfig()
	cfg.MaxRate = 1 << 30
	cfg, _ = cfg.withDefaults()
	filter, err := newFilter(cfg)
	if err != nil {
		b.Fatal(err)
	}
	r := &fileSource{globs: []string{path}, filter: filter, poll: time.Second, scanBytes: cfg.ScanBytes, now: time.Now}
	b.SetBytes(size)
	b.ReportAllocs()
	var matched uint64
	for b.Loop() {
		agg := newAggregator(cfg)
		t, err := r.open(path, agg, true, false) // a new file: read from its start
		if err != nil {
			b.Fatal(err)
		}
		if err := t.poll(agg); err != nil {
			b.Fatal(err)
		}
		t.close()
		batch := agg.drain(time.Now())
		s := batch.sources[path]
		if s.read != lines {
			b.Fatalf("read %d lines, want %d", s.read, lines)
		}
		matched = s.matched
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(matched), "errors/op")
}
