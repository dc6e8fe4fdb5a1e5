//go:build linux

package processes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// traceInstance is the name of the agent's tracefs instance. An instance
// has its own ring buffer, event switches and filters, so tracing here
// leaves the global trace buffer, and any other tracer, as it is.
const traceInstance = "guestdiag-agent"

// traceSignals follows the signal_generate tracepoint in the agent's own
// tracefs instance, filtered in the kernel to killSignals, and keeps the
// signals for the unit exits and OOM kills they caused. The instance is
// removed when ctx ends; one left by an agent that was killed is removed
// and made afresh on start. Nothing is loaded into the kernel: the
// tracepoint and its filter are built in.
func (p *Processes) traceSignals(ctx context.Context, _ func()) error {
	dir, err := openTraceInstance(p.cfg.Tracefs)
	if err != nil {
		return err
	}
	defer func() {
		if err := closeTraceInstance(dir); err != nil {
			p.logger.Warn("processes_trace_instance_left", "dir", dir, "err", err)
		}
	}()
	// trace_pipe can be polled, so os.Open puts it in the poller and
	// Close ends a Read that waits.
	f, err := os.Open(filepath.Join(dir, "trace_pipe"))
	if err != nil {
		return fmt.Errorf("open trace_pipe: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 4096)
	for sc.Scan() {
		if r, ok := parseSignalLine(sc.Text(), time.Now()); ok {
			p.ev.addSignal(r)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("read trace_pipe: %w", sc.Err())
}

// openTraceInstance makes the agent's instance under root, with a small
// buffer that wakes its reader on every event, and the signal_generate
// event on with its filter.
func openTraceInstance(root string) (string, error) {
	instances := filepath.Join(root, "instances")
	if _, err := os.Stat(instances); err != nil {
		return "", fmt.Errorf("tracefs is not mounted at %s: %w", root, err)
	}
	dir := filepath.Join(instances, traceInstance)
	if _, err := os.Stat(dir); err == nil {
		if err := os.Remove(dir); err != nil {
			return "", fmt.Errorf("remove the instance an earlier agent left: %w", err)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("make tracefs instance: %w", err)
	}
	event := filepath.Join(dir, "events", "signal", "signal_generate")
	steps := []struct {
		file, value string
		optional    bool
	}{
		{filepath.Join(dir, "buffer_size_kb"), "64", true}, // per CPU; the default is 1.4 MB
		{filepath.Join(dir, "buffer_percent"), "0", true},  // wake the reader at once (kernels from 5.1)
		{filepath.Join(event, "filter"), signalFilter(), false},
		{filepath.Join(event, "enable"), "1", false},
	}
	for _, s := range steps {
		err := os.WriteFile(s.file, []byte(s.value), 0)
		if err != nil && !s.optional {
			closeTraceInstance(dir)
			return "", fmt.Errorf("set up signal_generate: %w", err)
		}
	}
	return dir, nil
}

// closeTraceInstance turns the event off and removes the instance, which
// frees its buffer and leaves tracing as it was before the agent.
func closeTraceInstance(dir string) error {
	enable := filepath.Join(dir, "events", "signal", "signal_generate", "enable")
	err := os.WriteFile(enable, []byte("0"), 0)
	return errors.Join(err, os.Remove(dir))
}
