package hostrelay

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is the relay daemon's Go soft memory limit. The
// relay's own bounds (read buffers, the relay-wide in-flight budget) hold
// 1,000 channels in about 50 MB of live heap; without a limit the Go
// runtime lets garbage grow to twice the live heap before it collects, and
// that garbage is most of the resident memory.
const DefaultMemoryLimit = 90 << 20

// ApplyMemoryLimit sets the Go runtime's soft memory limit for the relay
// daemon from cfg.MemoryLimit: a positive limit is applied as given, 0
// means DefaultMemoryLimit unless the GOMEMLIMIT environment variable has
// set one, and a negative limit leaves the runtime's own setting alone.
// Run does not call it: a library user owns its process's runtime.
func ApplyMemoryLimit(cfg Config, logger *slog.Logger) {
	limit := cfg.MemoryLimit
	switch {
	case limit < 0:
		logger.Info("memory_limit_off")
		return
	case limit == 0 && os.Getenv("GOMEMLIMIT") != "":
		logger.Info("memory_limit_from_env", "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"))
		return
	case limit == 0:
		limit = DefaultMemoryLimit
	}
	debug.SetMemoryLimit(limit)
	logger.Info("memory_limit_set", "bytes", limit)
}

// MemoryLimitFlag is a flag.Value for Config.MemoryLimit: a size in bytes
// with an optional KiB, MiB or GiB suffix, or 0 for no limit.
func MemoryLimitFlag(limit *int64) *memoryLimitFlag { return &memoryLimitFlag{limit: limit} }

type memoryLimitFlag struct{ limit *int64 }

func (f *memoryLimitFlag) String() string {
	if f == nil || f.limit == nil || *f.limit == 0 {
		return ""
	}
	return strconv.FormatInt(max(*f.limit, 0), 10)
}

func (f *memoryLimitFlag) Set(v string) error {
	num, mult := strings.TrimSpace(v), int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if s, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(s), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("memory limit %q: want a number of bytes, optionally with KiB, MiB or GiB, or 0 for none", v)
	}
	*f.limit = n * mult
	if n == 0 {
		*f.limit = -1
	}
	return nil
}
