package daemon

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/guestdiag/guestdiag/scheduler/executor"
)

// ExecutorFactory builds an executor from its section of the config file
// (executors.NAME); decode fills a struct of the executor's own from it,
// and leaves it alone when the file has no such section.
type ExecutorFactory func(decode func(v any) error, logger *slog.Logger) (executor.Executor, error)

var (
	registryMu sync.Mutex
	registry   = map[string]ExecutorFactory{}
)

// RegisterExecutor makes an executor available to `run --executor NAME`.
// Executors register from the command's main package, so that the daemon
// does not depend on every hypervisor's client.
func RegisterExecutor(name string, f ExecutorFactory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[name] = f
}

// Executors lists the registered executors' names.
func Executors() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	return slices.Sorted(maps.Keys(registry))
}

// NewExecutor builds the named executor from the file's section for it.
func NewExecutor(name string, f *File, logger *slog.Logger) (executor.Executor, error) {
	registryMu.Lock()
	factory, ok := registry[name]
	registryMu.Unlock()
	if !ok {
		known := Executors()
		if len(known) == 0 {
			return nil, fmt.Errorf("executor %q: this build has no executors; execute mode cannot start (run in advisory mode)", name)
		}
		return nil, fmt.Errorf("executor %q: unknown; known: %v", name, known)
	}
	node, has := f.Executors[name]
	decode := func(v any) error {
		if !has {
			return nil
		}
		if err := node.Decode(v); err != nil {
			return fmt.Errorf("executors.%s: %w", name, err)
		}
		return nil
	}
	e, err := factory(decode, logger)
	if err != nil {
		return nil, fmt.Errorf("executor %s: %w", name, err)
	}
	return e, nil
}
