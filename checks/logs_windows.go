package checks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// logsReaders subscribes to the configured event log channels, plus the
// files setting when it is given.
func logsReaders(cfg LogsConfig, filter *logsFilter, logger *slog.Logger) ([]logsReader, []string) {
	var rs []logsReader
	var notes []string
	if len(cfg.Channels) > 0 {
		rs = append(rs, &logsEventLog{channels: cfg.Channels, filter: filter, scanWindow: cfg.ScanWindow.Duration, logger: logger})
	} else {
		notes = append(notes, "eventlog: no channels configured")
	}
	if len(cfg.Files) > 0 {
		rs = append(rs, &logsFiles{globs: cfg.Files, filter: filter, poll: cfg.PollInterval.Duration,
			scanBytes: cfg.ScanBytes, logger: logger, now: time.Now})
	}
	return rs, notes
}

var (
	logsWevtapi                  = windows.NewLazySystemDLL("wevtapi.dll")
	logsEvtSubscribe             = logsWevtapi.NewProc("EvtSubscribe")
	logsEvtNext                  = logsWevtapi.NewProc("EvtNext")
	logsEvtRender                = logsWevtapi.NewProc("EvtRender")
	logsEvtClose                 = logsWevtapi.NewProc("EvtClose")
	logsEvtCreateBookmark        = logsWevtapi.NewProc("EvtCreateBookmark")
	logsEvtUpdateBookmark        = logsWevtapi.NewProc("EvtUpdateBookmark")
	logsEvtFormatMessage         = logsWevtapi.NewProc("EvtFormatMessage")
	logsEvtOpenPublisherMetadata = logsWevtapi.NewProc("EvtOpenPublisherMetadata")
)

// Values from winevt.h.
const (
	logsEvtSubscribeToFutureEvents      = 1
	logsEvtSubscribeStartAtOldestRecord = 2
	logsEvtSubscribeStartAfterBookmark  = 3
	logsEvtRenderEventXML               = 1
	logsEvtRenderBookmark               = 2
	logsEvtFormatMessageEvent           = 1
	logsErrorNoMoreItems                = windows.Errno(259)
	logsEvtBatch                        = 64
)

type logsEvtHandle uintptr

func logsEvtCloseHandle(h logsEvtHandle) {
	if h != 0 {
		logsEvtClose.Call(uintptr(h))
	}
}

// logsEventLog follows the event log through one pull subscription to
// every channel. The position is a bookmark, which records the last
// record id read on each channel.
type logsEventLog struct {
	channels   []string
	filter     *logsFilter
	scanWindow time.Duration
	logger     *slog.Logger
}

const logsEventLogSource = "eventlog"

func (r *logsEventLog) name() string { return logsEventLogSource }

func (r *logsEventLog) read(ctx context.Context, follow bool, sink logsSink) error {
	if err := logsWevtapi.Load(); err != nil {
		return fmt.Errorf("wevtapi.dll: %w", err)
	}
	pos, saved := sink.position(logsEventLogSource)
	var since time.Duration
	flags, how := uintptr(logsEvtSubscribeToFutureEvents), "end"
	bookmark := logsEvtHandle(0)
	if saved && pos.Bookmark != "" {
		p, err := windows.UTF16PtrFromString(pos.Bookmark)
		if err == nil {
			h, _, _ := logsEvtCreateBookmark.Call(uintptr(unsafe.Pointer(p)))
			bookmark = logsEvtHandle(h)
		}
		if bookmark != 0 {
			flags, how = logsEvtSubscribeStartAfterBookmark, "saved_position"
		} else {
			r.logger.Warn("log_bookmark_unusable", "source", logsEventLogSource)
		}
	}
	if bookmark == 0 {
		h, _, err := logsEvtCreateBookmark.Call(0)
		if h == 0 {
			return fmt.Errorf("EvtCreateBookmark: %w", err)
		}
		bookmark = logsEvtHandle(h)
		if !follow {
			flags, how, since = logsEvtSubscribeStartAtOldestRecord, "recent_tail", r.scanWindow
		}
	}
	defer logsEvtCloseHandle(bookmark)

	signal, err := windows.CreateEvent(nil, 1, 1, nil)
	if err != nil {
		return fmt.Errorf("CreateEvent: %w", err)
	}
	defer windows.CloseHandle(signal)
	query, err := windows.UTF16PtrFromString(logsEventQuery(r.channels, logsEventLevels(r.filter.minPri), since))
	if err != nil {
		return err
	}
	bm := uintptr(0)
	if flags == logsEvtSubscribeStartAfterBookmark {
		bm = uintptr(bookmark)
	}
	sub, _, err := logsEvtSubscribe.Call(0, uintptr(signal), 0, uintptr(unsafe.Pointer(query)), bm, 0, 0, flags)
	if sub == 0 {
		return fmt.Errorf("EvtSubscribe %v: %w", r.channels, err)
	}
	defer logsEvtCloseHandle(logsEvtHandle(sub))
	sink.started(logsEventLogSource, "eventlog", how)

	rd := &logsEvtRenderer{publishers: map[string]logsEvtHandle{}}
	defer rd.close()
	for {
		if err := r.drain(logsEvtHandle(sub), bookmark, rd, sink); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		windows.ResetEvent(signal)
		// Drain again after the reset: an event that came in between would
		// otherwise wait for the next signal.
		if err := r.drain(logsEvtHandle(sub), bookmark, rd, sink); err != nil {
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
func (r *logsEventLog) drain(sub, bookmark logsEvtHandle, rd *logsEvtRenderer, sink logsSink) error {
	var handles [logsEvtBatch]logsEvtHandle
	for {
		var n uint32
		ok, _, err := logsEvtNext.Call(uintptr(sub), logsEvtBatch, uintptr(unsafe.Pointer(&handles[0])), 1000, 0, uintptr(unsafe.Pointer(&n)))
		if ok == 0 {
			if errors.Is(err, logsErrorNoMoreItems) || errors.Is(err, windows.ERROR_TIMEOUT) {
				return nil
			}
			return fmt.Errorf("EvtNext: %w", err)
		}
		var entries []logsEntry
		for _, h := range handles[:n] {
			if e, err := rd.entry(h); err != nil {
				r.logger.Debug("log_event_unreadable", "err", err)
			} else if pri, ok := r.filter.classify(e.Priority, []byte(e.Message)); ok {
				e.Priority = pri
				entries = append(entries, e)
			}
			logsEvtUpdateBookmark.Call(uintptr(bookmark), uintptr(h))
			logsEvtCloseHandle(h)
		}
		xml, err := rd.render(0, bookmark, logsEvtRenderBookmark)
		if err != nil {
			return fmt.Errorf("render bookmark: %w", err)
		}
		sink.push(logsEventLogSource, LogsPosition{Bookmark: xml}, uint64(n), entries)
	}
}

// logsEvtRenderer renders events, keeping the publishers' metadata handles
// that format their messages.
type logsEvtRenderer struct {
	buf        []uint16
	publishers map[string]logsEvtHandle // 0: the publisher has no metadata
}

func (rd *logsEvtRenderer) close() {
	for _, h := range rd.publishers {
		logsEvtCloseHandle(h)
	}
}

func (rd *logsEvtRenderer) entry(ev logsEvtHandle) (logsEntry, error) {
	x, err := rd.render(0, ev, logsEvtRenderEventXML)
	if err != nil {
		return logsEntry{}, err
	}
	e, err := parseLogsEventXML([]byte(x))
	if err != nil {
		return logsEntry{}, err
	}
	if msg, err := rd.message(e.Provider, ev); err == nil && msg != "" {
		e.Message = msg
	}
	return e, nil
}

// render calls EvtRender, growing the buffer as asked.
func (rd *logsEvtRenderer) render(ctx, h logsEvtHandle, flags uintptr) (string, error) {
	if rd.buf == nil {
		rd.buf = make([]uint16, 4096)
	}
	for range 3 {
		var used, props uint32
		ok, _, err := logsEvtRender.Call(uintptr(ctx), uintptr(h), flags, uintptr(len(rd.buf)*2),
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
func (rd *logsEvtRenderer) message(provider string, ev logsEvtHandle) (string, error) {
	pub, ok := rd.publishers[provider]
	if !ok {
		if len(rd.publishers) >= 128 {
			rd.close()
			rd.publishers = map[string]logsEvtHandle{}
		}
		if p, err := windows.UTF16PtrFromString(provider); err == nil {
			h, _, _ := logsEvtOpenPublisherMetadata.Call(0, uintptr(unsafe.Pointer(p)), 0, 0, 0)
			pub = logsEvtHandle(h)
		}
		rd.publishers[provider] = pub
	}
	if pub == 0 {
		return "", errors.New("no publisher metadata")
	}
	for range 3 {
		var used uint32
		ok, _, err := logsEvtFormatMessage.Call(uintptr(pub), uintptr(ev), 0, 0, 0, logsEvtFormatMessageEvent,
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
