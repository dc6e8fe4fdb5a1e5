package logs

import (
	"log/slog"
	"os"
	"os/exec"
	"time"
)

// defaultFiles are read when the journal is not there and no files are
// configured: where syslog daemons write on Debian and on Red Hat.
var defaultFiles = []string{"/var/log/syslog", "/var/log/messages", "/var/log/kern.log"}

// readers picks the sources of a Linux system: the journal when
// journald runs; otherwise the syslog files and /dev/kmsg, the files'
// kernel lines being left to kmsg, which knows their priority.
func readers(cfg Config, filter *entryFilter, logger *slog.Logger) ([]reader, []string) {
	var rs []reader
	var notes []string
	journal := false
	switch cfg.Journal {
	case "on":
		journal = true
	case "auto":
		_, err := os.Stat("/run/systemd/journal")
		_, lerr := exec.LookPath("journalctl")
		journal = err == nil && lerr == nil
		if !journal {
			notes = append(notes, "journald: not running")
		}
	}
	if journal {
		rs = append(rs, &journalReader{command: "journalctl", filter: filter, scanWindow: cfg.ScanWindow.Duration, now: time.Now})
	}

	kmsg := cfg.Kmsg == "on" || cfg.Kmsg == "auto" && !journal
	if kmsg && cfg.Kmsg == "auto" {
		if f, err := os.Open("/dev/kmsg"); err != nil {
			notes = append(notes, "kmsg: "+err.Error())
			kmsg = false
		} else {
			f.Close()
		}
	}
	if kmsg {
		rs = append(rs, &kmsgReader{path: "/dev/kmsg", bootIDPath: "/proc/sys/kernel/random/boot_id", filter: filter, scanWindow: cfg.ScanWindow.Duration})
	}

	files := &fileSource{globs: cfg.Files, filter: filter, poll: cfg.PollInterval.Duration, scanBytes: cfg.ScanBytes,
		skipKernel: kmsg, logger: logger, now: time.Now}
	switch {
	case cfg.Files == nil && journal:
		notes = append(notes, "files: the journal holds their entries")
	case cfg.Files == nil:
		files.globs = defaultFiles
		if len(files.paths()) == 0 {
			notes = append(notes, "files: none of /var/log/syslog, /var/log/messages, /var/log/kern.log exists")
		} else {
			rs = append(rs, files)
		}
	case len(cfg.Files) > 0:
		rs = append(rs, files)
	}
	return rs, notes
}
