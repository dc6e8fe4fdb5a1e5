//go:build !linux && !windows

package checks

import (
	"log/slog"
	"time"
)

func logsReaders(cfg LogsConfig, filter *logsFilter, logger *slog.Logger) ([]logsReader, []string) {
	if len(cfg.Files) > 0 {
		return []logsReader{&logsFiles{globs: cfg.Files, filter: filter, poll: cfg.PollInterval.Duration,
			scanBytes: cfg.ScanBytes, logger: logger, now: time.Now}}, nil
	}
	return nil, []string{"no log source on this system but the files setting"}
}
