package winsvc

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
)

type recordedEvents []string

func (r *recordedEvents) Warning(eid uint32, msg string) error {
	*r = append(*r, fmt.Sprintf("warning %d %s", eid, msg))
	return nil
}

func (r *recordedEvents) Error(eid uint32, msg string) error {
	*r = append(*r, fmt.Sprintf("error %d %s", eid, msg))
	return nil
}

func TestEventHandlerCopiesWarningsAndErrorsAsTextLines(t *testing.T) {
	var got recordedEvents
	logger := slog.New(newEventHandler(&got, slog.LevelWarn)).With("check", "logs").WithGroup("port")
	logger.Info("host_connected", "device", `\\.\Global\org.guestdiag.agent.0`)
	logger.Warn("port_unavailable", "err", "open: File not found.", "retry", "2s")
	logger.Error("agent_failed", "err", "state dir: denied")
	want := recordedEvents{
		`warning 10 level=WARN msg=port_unavailable check=logs port.err="open: File not found." port.retry=2s`,
		`error 10 level=ERROR msg=agent_failed check=logs port.err="state dir: denied"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n%q\nwant:\n%q", got, want)
	}
}
