package daemon

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/scheduler/executor"
)

func TestTheRegistryBuildsAnExecutorFromItsSection(t *testing.T) {
	if _, err := NewExecutor("stand-in", Defaults(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "no executors") {
		t.Fatalf("an empty registry: got %v, want an error saying this build has no executors", err)
	}
	var got string
	RegisterExecutor("stand-in", func(decode func(any) error, _ *slog.Logger) (executor.Executor, error) {
		var cfg struct{ Target string }
		if err := decode(&cfg); err != nil {
			return nil, err
		}
		got = cfg.Target
		return &standIn{}, nil
	})
	t.Cleanup(func() {
		registryMu.Lock()
		delete(registry, "stand-in")
		registryMu.Unlock()
	})
	f, err := Parse("x.yaml", []byte("executors:\n  stand-in:\n    target: lab\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExecutor("stand-in", f, slog.New(slog.DiscardHandler))
	if err != nil || e.Name() != "stand-in" || got != "lab" {
		t.Errorf("got %v, %v, section %q; want the stand-in built with target lab", e, err, got)
	}
	if _, err := NewExecutor("qmp", f, nil); err == nil || !strings.Contains(err.Error(), "known: [stand-in]") {
		t.Errorf("an unknown executor: got %v, want the known ones listed", err)
	}
}
