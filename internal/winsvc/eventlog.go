package winsvc

import (
	"bytes"
	"context"
	"log/slog"
)

// eventSink is the part of *eventlog.Log the handler writes to.
type eventSink interface {
	Warning(eid uint32, msg string) error
	Error(eid uint32, msg string) error
}

// eventHandler copies log records at or above a level to the event log as
// one line of slog's text format each. A service has no console, so the
// event log is where an administrator looks first.
type eventHandler struct {
	el    eventSink
	level slog.Level
	// ops replays WithAttrs and WithGroup on the text handler made for each
	// record; records this rare are not worth a shared, locked buffer.
	ops []func(slog.Handler) slog.Handler
}

func newEventHandler(el eventSink, level slog.Level) *eventHandler {
	return &eventHandler{el: el, level: level}
}

func (h *eventHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	var buf bytes.Buffer
	var th slog.Handler = slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: h.level,
		// The event log stamps its own time.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	for _, op := range h.ops {
		th = op(th)
	}
	if err := th.Handle(ctx, r); err != nil {
		return err
	}
	msg := string(bytes.TrimSpace(buf.Bytes()))
	if r.Level >= slog.LevelError {
		return h.el.Error(eventLog, msg)
	}
	return h.el.Warning(eventLog, msg)
}

func (h *eventHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.with(func(th slog.Handler) slog.Handler { return th.WithAttrs(attrs) })
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	return h.with(func(th slog.Handler) slog.Handler { return th.WithGroup(name) })
}

func (h *eventHandler) with(op func(slog.Handler) slog.Handler) *eventHandler {
	c := *h
	c.ops = append(append([]func(slog.Handler) slog.Handler(nil), h.ops...), op)
	return &c
}
