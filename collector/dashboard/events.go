package dashboard

import (
	"encoding/json"
	"net/http"
	"time"
)

// keepAlive is how often an idle event stream gets a comment, so that
// proxies and browsers do not close it.
const keepAlive = 25 * time.Second

// events streams changes as server-sent events, "event: change" with the
// Change as JSON data, for the pages' script. ?host= and ?vm= keep to one
// host or one VM. JSON never contains a raw newline, so a guest's name
// cannot end an event early or forge another.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	host, vm := r.URL.Query().Get("host"), r.URL.Query().Get("vm")
	rc := http.NewResponseController(w)
	// The server's write timeout, if any, must not cut a stream that is
	// meant to stay open.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte("retry: 3000\n\n")); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	changes := s.src.Subscribe(r.Context())
	tick := time.NewTicker(s.keepAlive)
	defer tick.Stop()
	for {
		var msg []byte
		select {
		case c, ok := <-changes:
			if !ok {
				return
			}
			if host != "" && c.Host != host || vm != "" && c.VM != vm {
				continue
			}
			b, err := json.Marshal(c)
			if err != nil {
				continue
			}
			msg = append(append([]byte("event: change\ndata: "), b...), "\n\n"...)
		case <-tick.C:
			// Credentials are checked when the stream opens and again
			// here, so a session that expires (or a token or user that
			// is no longer valid) stops receiving within keepAlive.
			if _, err := s.auth.User(r); err != nil {
				return
			}
			msg = []byte(": keep-alive\n\n")
		}
		if _, err := w.Write(msg); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}
