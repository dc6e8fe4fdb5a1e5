package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// journalReader reads the systemd journal through journalctl's JSON output,
// which needs no cgo and follows the journal's own file rotation. The
// priority filter runs in journalctl; the cursor of the last entry read is
// the position.
type journalReader struct {
	command    string // journalctl
	filter     *entryFilter
	scanWindow time.Duration
	now        func() time.Time
}

const journalSource = "journald"

// journalMaxLine bounds one JSON entry; longer ones are skipped.
const journalMaxLine = 1 << 20

func (r *journalReader) name() string { return journalSource }

// journalFields are the fields journalctl prints, those journalRecord
// holds: an entry has some 25 (command line, cgroup, capabilities, ...),
// which journalctl would otherwise format and the agent read past.
// __CURSOR and __REALTIME_TIMESTAMP are always printed.
const journalFields = "MESSAGE,PRIORITY,_SYSTEMD_UNIT,_SYSTEMD_USER_UNIT,SYSLOG_IDENTIFIER,_COMM,_PID,_TRANSPORT"

func (r *journalReader) args(pos Position, saved, follow bool) ([]string, string) {
	args := []string{"--output=json", "--output-fields=" + journalFields, "--no-pager", "--quiet", "--priority=" + strconv.Itoa(r.filter.minPri)}
	var how string
	switch {
	case saved && pos.Cursor != "":
		args, how = append(args, "--after-cursor="+pos.Cursor), "saved_position"
	case follow:
		// From the second the agent starts, not --lines=0: the journal's
		// end is wherever journalctl finds it once running, and an entry
		// written in between would be missed for good (seen in a Debian
		// guest under TCG). What that second held before is read again at
		// most once.
		args, how = append(args, "--since=@"+strconv.FormatInt(r.now().Unix(), 10)), "end"
	default:
		args, how = append(args, "--since=@"+strconv.FormatInt(r.now().Add(-r.scanWindow).Unix(), 10)), "recent_tail"
	}
	if follow {
		args = append(args, "--follow")
	}
	return args, how
}

func (r *journalReader) read(ctx context.Context, follow bool, sink entrySink) error {
	pos, saved := sink.position(journalSource)
	args, how := r.args(pos, saved, follow)
	cmd := exec.CommandContext(ctx, r.command, args...)
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &capped{buf: &stderr, max: 4096}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r.command, err)
	}
	sink.started(journalSource, "journald", how)
	n, rerr := r.consume(out, sink)
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return nil
	case rerr != nil:
		return rerr
	case werr != nil:
		msg := strings.TrimSpace(stderr.String())
		if n == 0 && pos.Cursor != "" && strings.Contains(msg, "cursor") {
			// A cursor journalctl refuses would fail every retry: forget it
			// and start over from the end.
			sink.push(journalSource, Position{}, 0, nil)
		}
		return fmt.Errorf("%s: %w: %s", r.command, werr, protocol.Clip(msg, 512))
	case follow:
		return errors.New("journalctl --follow ended")
	}
	return nil
}

// consume reads JSON lines until out ends, pushing each entry with its
// cursor.
func (r *journalReader) consume(out io.Reader, sink entrySink) (int, error) {
	br := bufio.NewReaderSize(out, 64<<10)
	var long []byte
	n := 0
	entries := make([]entry, 0, 1)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long) < journalMaxLine {
				long = append(long, line...)
			}
			continue
		}
		if long != nil {
			line = append(long, line...)
			long = nil
			if len(line) > journalMaxLine {
				line = nil
			}
		}
		if len(bytes.TrimSpace(line)) > 0 {
			n++
			e, cursor, perr := parseJournal(line)
			if perr == nil {
				entries = entries[:0]
				if pri, ok := r.filter.classify(e.Priority, []byte(e.Message)); ok {
					e.Priority = pri
					entries = append(entries, e)
				}
				sink.push(journalSource, Position{Cursor: cursor}, 1, entries)
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// journalRecord holds the fields of a journalctl -o json line that the
// check uses. Each is kept raw: a field is a string, an array of bytes when
// it is not valid UTF-8 text, an array of values when it repeats, or null
// when it is too large to print.
type journalRecord struct {
	Message   json.RawMessage `json:"MESSAGE"`
	Priority  json.RawMessage `json:"PRIORITY"`
	Unit      json.RawMessage `json:"_SYSTEMD_UNIT"`
	UserUnit  json.RawMessage `json:"_SYSTEMD_USER_UNIT"`
	Ident     json.RawMessage `json:"SYSLOG_IDENTIFIER"`
	Comm      json.RawMessage `json:"_COMM"`
	PID       json.RawMessage `json:"_PID"`
	Cursor    json.RawMessage `json:"__CURSOR"`
	Realtime  json.RawMessage `json:"__REALTIME_TIMESTAMP"`
	Transport json.RawMessage `json:"_TRANSPORT"`
}

// parseJournal reads one line of journalctl -o json.
func parseJournal(line []byte) (entry, string, error) {
	var rec journalRecord
	if err := json.Unmarshal(line, &rec); err != nil {
		return entry{}, "", fmt.Errorf("journal entry: %w", err)
	}
	cursor := journalField(rec.Cursor)
	if cursor == "" {
		return entry{}, "", errors.New("journal entry without __CURSOR")
	}
	e := entry{Source: journalSource, Priority: priErr}
	if p, err := strconv.Atoi(journalField(rec.Priority)); err == nil && p >= 0 && p <= 7 {
		e.Priority = p
	}
	e.Message = journalField(rec.Message)
	if e.Message == "" && string(bytes.TrimSpace(rec.Message)) == "null" {
		e.Message = "(message too large to print)"
	}
	for _, u := range []json.RawMessage{rec.Unit, rec.UserUnit, rec.Ident, rec.Comm} {
		if e.Unit = journalField(u); e.Unit != "" {
			break
		}
	}
	if e.Unit == "" && journalField(rec.Transport) == "kernel" {
		e.Unit = "kernel"
	}
	e.PID, _ = strconv.Atoi(journalField(rec.PID))
	if us, err := strconv.ParseInt(journalField(rec.Realtime), 10, 64); err == nil {
		e.Time = time.UnixMicro(us)
	} else {
		e.Time = time.Now()
	}
	return e, cursor, nil
}

// journalField turns a raw field into text: a string as is, an array
// of byte values as those bytes, an array of values (a repeated field) as
// its first value.
func journalField(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '[':
		var bs []byte
		var nums []uint8
		if json.Unmarshal(raw, &nums) == nil {
			bs = nums
			return string(bs)
		}
		var vals []json.RawMessage
		if json.Unmarshal(raw, &vals) == nil && len(vals) > 0 {
			return journalField(vals[0])
		}
	}
	return ""
}

// capped keeps the first max bytes written to it.
type capped struct {
	buf *bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
