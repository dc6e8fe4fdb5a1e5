package logs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// readers subscribes to the configured event log channels, plus the
// files setting when it is given.
func readers(cfg Config, filter *entryFilter, logger *slog.Logger) ([]reader, []string) {
	var rs []reader
	var notes []string
	if len(cfg.Channels) > 0 {
		rs = append(rs, &eventLog{channels: cfg.Channels, filter: filter, scanWindow: cfg.ScanWindow.Duration, logger: logger})
	} else {
		notes = append(notes, "eventlog: no channels configured")
	}
	if len(cfg.Files) > 0 {
		rs = append(rs, &fileSource{globs: cfg.Files, filter: filter, poll: cfg.PollInterval.Duration,
			scanBytes: cfg.ScanBytes, logger: logger, now: time.Now})
	}
	return rs, notes
}

var (
	wevtapi                  = windows.NewLazySystemDLL("wevtapi.dll")
	evtSubscribe             = wevtapi.NewProc("EvtSubscribe")
	evtNext                  = wevtapi.NewProc("EvtNext")
	evtRender                = wevtapi.NewProc("EvtRender")
	evtClose                 = wevtapi.NewProc("EvtClose")
	evtCreateBookmark        = wevtapi.NewProc("EvtCreateBookmark")
	evtUpdateBookmark        = wevtapi.NewProc("EvtUpdateBookmark")
	evtFormatMessage         = wevtapi.NewProc("EvtFormatMessage")
	evtOpenPublisherMetadata = wevtapi.NewProc("EvtOpenPublisherMetadata")
)

// Values from winevt.h.
const (
	evtSubscribeToFutureEvents      = 1
	evtSubscribeStartAtOldestRecord = 2
	evtSubscribeStartAfterBookmark  = 3
	evtRenderEventXML               = 1
	evtRenderBookmark               = 2
	evtFormatMessageEvent           = 1
	errorNoMoreItems                = windows.Errno(259)
	evtBatch                        = 64
)

type evtHandle uintptr

func evtCloseHandle(h evtHandle) {
	if h != 0 {
		evtClose.Call(uintptr(h))
	}
}

// eventLog follows the event log through one pull subscription to
// every channel. The position is a bookmark, which records the last
// record id read on each channel.
type eventLog struct {
	channels   []string
	filter     *entryFilter
	scanWindow time.Duration
	logger     *slog.Logger
}

const eventLogSource = "eventlog"

func (r *eventLog) name() string { return eventLogSource }

func (r *eventLog) read(ctx context.Context, follow bool, sink entrySink) error {
	if err := wevtapi.Load(); err != nil {
		return fmt.Errorf("wevtapi.dll: %w", err)
	}
	pos, saved := sink.position(eventLogSource)
	var since time.Duration
	flags, how := uintptr(evtSubscribeToFutureEvents), "end"
	bookmark := evtHandle(0)
	if saved && pos.Bookmark != "" {
		p, err := windows.UTF16PtrFromString(pos.Bookmark)
		if err == nil {
			h, _, _ := evtCreateBookmark.Call(uintptr(unsafe.Pointer(p)))
			bookmark = evtHandle(h)
		}
		if bookmark != 0 {
			flags, how = evtSubscribeStartAfterBookmark, "saved_position"
		} else {
			r.logger.Warn("log_bookmark_unusable", "source", eventLogSource)
		}
	}
	if bookmark == 0 {
		h, _, err := evtCreateBookmark.Call(0)
		if h == 0 {
			return fmt.Errorf("EvtCreateBookmark: %w", err)
		}
		bookmark = evtHandle(h)
		if !follow {
			flags, how, since = evtSubscribeStartAtOldestRecord, "recent_tail", r.scanWindow
		}
	}
	defer evtCloseHandle(bookmark)

	signal, err := windows.CreateEvent(nil, 1, 1, nil)
	if err != nil {
		return fmt.Errorf("CreateEvent: %w", err)
	}
	defer windows.CloseHandle(signal)
	query, err := windows.UTF16PtrFromString(eventQuery(r.channels, eventLevels(r.filter.minPri), since))
	if err != nil {
		return err
	}
	bm := uintptr(0)
	if flags == evtSubscribeStartAfterBookmark {
		bm = uintptr(bookmark)
	}
	sub, _, err := evtSubscribe.Call(0, uintptr(signal), 0, uintptr(unsafe.Pointer(query)), bm, 0, 0, flags)
	if sub == 0 {
		return fmt.Errorf("EvtSubscribe %v: %w", r.channels, err)
	}
	defer evtCloseHandle(evtHandle(sub))
	sink.started(eventLogSource, "eventlog", how)

	rd := &evtRenderer{publishers: map[string]evtHandle{}}
	defer rd.close()
	for {
		if err := r.drain(evtHandle(sub), bookmark, rd, sink); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		windows.ResetEvent(signal)
		// Drain again after the reset: an event that came in between would
		// otherwise wait for the next signal.
		if err := r.drain(evtHandle(sub), bookmark, rd, sink); err != nil {
			return err
		}
		for {
			if ctx.Err() != nil {
				return nil
			}
			ev, err := windows.WaitForSingleObject(signal, 500)
			if err != nil {
				return fmt.Errorf("WaitForSingleObject: %w", err)
			}
			if ev == windows.WAIT_OBJECT_0 {
				break
			}
		}
	}
}

// drain takes every event the subscription has now, batch by batch, and
// pushes each batch with the bookmark after it.
func (r *eventLog) drain(sub, bookmark evtHandle, rd *evtRenderer, sink entrySink) error {
	var handles [evtBatch]evtHandle
	for {
		var n uint32
		ok, _, err := evtNext.Call(uintptr(sub), evtBatch, uintptr(unsafe.Pointer(&handles[0])), 1000, 0, uintptr(unsafe.Pointer(&n)))
		if ok == 0 {
			if errors.Is(err, errorNoMoreItems) || errors.Is(err, windows.ERROR_TIMEOUT) {
				return nil
			}
			return fmt.Errorf("EvtNext: %w", err)
		}
		var entries []entry
		for _, h := range handles[:n] {
			if e, err := rd.entry(h); err != nil {
				r.logger.Debug("log_event_unreadable", "err", err)
			} else if pri, ok := r.filter.classify(e.Priority, []byte(e.Message)); ok {
				e.Priority = pri
				entries = append(entries, e)
			}
			evtUpdateBookmark.Call(uintptr(bookmark), uintptr(h))
			evtCloseHandle(h)
		}
		xml, err := rd.render(0, bookmark, evtRenderBookmark)
		if err != nil {
			return fmt.Errorf("render bookmark: %w", err)
		}
		sink.push(eventLogSource, Position{Bookmark: xml}, uint64(n), entries)
	}
}

// evtRenderer renders events, keeping the publishers' metadata handles
// that format their messages.
type evtRenderer struct {
	buf        []uint16
	publishers map[string]evtHandle // 0: the publisher has no metadata
}

func (rd *evtRenderer) close() {
	for _, h := range rd.publishers {
		evtCloseHandle(h)
	}
}

func (rd *evtRenderer) entry(ev evtHandle) (entry, error) {
	x, err := rd.render(0, ev, evtRenderEventXML)
	if err != nil {
		return entry{}, err
	}
	e, err := parseEventXML([]byte(x))
	if err != nil {
		return entry{}, err
	}
	if msg, err := rd.message(e.Provider, ev); err == nil && msg != "" {
		e.Message = msg
	}
	return e, nil
}

// render calls EvtRender, growing the buffer as asked.
func (rd *evtRenderer) render(ctx, h evtHandle, flags uintptr) (string, error) {
	if rd.buf == nil {
		rd.buf = make([]uint16, 4096)
	}
	for range 3 {
		var used, props uint32
		ok, _, err := evtRender.Call(uintptr(ctx), uintptr(h), flags, uintptr(len(rd.buf)*2),
			uintptr(unsafe.Pointer(&rd.buf[0])), uintptr(unsafe.Pointer(&used)), uintptr(unsafe.Pointer(&props)))
		if ok != 0 {
			return windows.UTF16ToString(rd.buf[:min(int(used/2), len(rd.buf))]), nil
		}
		if !errors.Is(err, windows.ERROR_INSUFFICIENT_BUFFER) {
			return "", fmt.Errorf("EvtRender: %w", err)
		}
		rd.buf = make([]uint16, used/2+1)
	}
	return "", errors.New("EvtRender: buffer keeps growing")
}

// message formats an event's message through its publisher's message
// file.
func (rd *evtRenderer) message(provider string, ev evtHandle) (string, error) {
	pub, ok := rd.publishers[provider]
	if !ok {
		if len(rd.publishers) >= 128 {
			rd.close()
			rd.publishers = map[string]evtHandle{}
		}
		if p, err := windows.UTF16PtrFromString(provider); err == nil {
			h, _, _ := evtOpenPublisherMetadata.Call(0, uintptr(unsafe.Pointer(p)), 0, 0, 0)
			pub = evtHandle(h)
		}
		rd.publishers[provider] = pub
	}
	if pub == 0 {
		return "", errors.New("no publisher metadata")
	}
	for range 3 {
		var used uint32
		ok, _, err := evtFormatMessage.Call(uintptr(pub), uintptr(ev), 0, 0, 0, evtFormatMessageEvent,
			uintptr(len(rd.buf)), uintptr(unsafe.Pointer(&rd.buf[0])), uintptr(unsafe.Pointer(&used)))
		if ok != 0 {
			return windows.UTF16ToString(rd.buf[:min(int(used), len(rd.buf))]), nil
		}
		if !errors.Is(err, windows.ERROR_INSUFFICIENT_BUFFER) {
			return "", fmt.Errorf("EvtFormatMessage: %w", err)
		}
		rd.buf = make([]uint16, used+1)
	}
	return "", errors.New("EvtFormatMessage: buffer keeps growing")
}
