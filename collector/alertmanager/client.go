package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/collector"
)

const (
	// maxBatch bounds one POST.
	maxBatch = 64
	// lifetimes is how many resend intervals a firing alert outlives its
	// last push: enough to ride out a few failed resends, short enough that
	// Alertmanager resolves the alerts of a dead collector by itself.
	lifetimes = 4
	// maxBody bounds how much of an error answer is quoted.
	maxBody = 512
	// dropLogEvery rate-limits the log of a full queue.
	dropLogEvery = 10 * time.Second
	minBackoff   = 250 * time.Millisecond
	maxBackoff   = 30 * time.Second
)

// Config says where alerts go and how often they are resent.
type Config struct {
	// URLs are the base URLs of the Alertmanagers (http://am:9093). Every
	// alert goes to each of them, since an HA pair does not share alerts.
	URLs []string
	// Timeout bounds one POST; 10 s when zero.
	Timeout time.Duration
	// ResendInterval is how often firing alerts are pushed again; 1 min
	// when zero.
	ResendInterval time.Duration
	// ExternalURL is the dashboard's base URL, the source of each alert's
	// generatorURL; none when empty.
	ExternalURL string
	// Username and Password, when Username is set, are sent as basic auth;
	// otherwise BearerToken, when set, as a bearer token.
	Username    string
	Password    string
	BearerToken string
	// QueueSize bounds the alerts waiting to be sent; 10000 when zero.
	QueueSize int
	// HTTPClient replaces http.DefaultClient, for TLS settings or tests.
	HTTPClient *http.Client
}

// Stats counts what happened to alerts since New.
type Stats struct {
	Queued   int    // waiting to be sent now
	Sent     uint64 // accepted by at least one Alertmanager
	Failed   uint64 // POSTs that failed, each URL counted
	Dropped  uint64 // pushed out of a full queue, oldest first
	Rejected uint64 // refused by every Alertmanager as invalid (4xx)
}

// Client pushes alerts to Alertmanager. Notify may be called from any
// goroutine; Run drains the queue.
type Client struct {
	cfg  Config
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	order   []string // fingerprints, oldest first
	pending map[string]collector.Alert
	// resolved holds when each recently resolved alert changed last, so
	// that a resend of an older firing state cannot revive it.
	resolved    map[string]time.Time
	stats       Stats
	lastDropLog time.Time

	// sentLabels are the labels each firing alert was last pushed with,
	// owned by Run: when they change (severity, KB entry) the old label
	// set is another alert to Alertmanager and must be resolved.
	sentLabels map[string]sentLabels
}

type sentLabels struct {
	labels map[string]string
	at     time.Time
}

// New returns a Client; it sends nothing until Run is called.
func New(cfg Config, logger *slog.Logger) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ResendInterval <= 0 {
		cfg.ResendInterval = time.Minute
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	return &Client{
		cfg:        cfg,
		log:        logger,
		wake:       make(chan struct{}, 1),
		pending:    make(map[string]collector.Alert),
		resolved:   make(map[string]time.Time),
		sentLabels: make(map[string]sentLabels),
	}
}

// Notify queues alerts for Run to send and returns at once: a slow or dead
// Alertmanager never holds up the caller. It fails only when ctx is done.
func (c *Client) Notify(ctx context.Context, alerts ...collector.Alert) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("alertmanager notify: %w", err)
	}
	c.enqueue(alerts)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Queued = len(c.order)
	return s
}

// Run sends queued alerts until ctx is cancelled, then returns nil. At start
// and every ResendInterval it queues firing(), the alerts firing now; firing
// may be nil.
func (c *Client) Run(ctx context.Context, firing func() []collector.Alert) error {
	if len(c.cfg.URLs) == 0 {
		return errors.New("alertmanager: no URL configured")
	}
	for i, u := range c.cfg.URLs {
		// Neither error quotes u whole: it may hold a password.
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("alertmanager: URL %d does not parse", i+1)
		}
		if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("alertmanager: URL %s: want http(s)://host[:port][/prefix]", p.Redacted())
		}
	}
	resend := func() {
		// Past this, Alertmanager has expired what the entries are about
		// (and another collector may have resolved it).
		cutoff := time.Now().Add(-lifetimes * c.cfg.ResendInterval)
		c.pruneResolved(cutoff)
		maps.DeleteFunc(c.sentLabels, func(_ string, s sentLabels) bool { return s.at.Before(cutoff) })
		if firing != nil {
			c.enqueue(firing())
		}
	}
	tick := time.NewTicker(c.cfg.ResendInterval)
	defer tick.Stop()
	resend()
	var backoff time.Duration
	var retry <-chan time.Time // set while backing off
	for {
		if retry == nil {
			if batch := c.pop(); len(batch) > 0 {
				if c.send(ctx, batch) {
					backoff = 0
					continue
				}
				if ctx.Err() != nil {
					return nil
				}
				c.requeue(batch)
				backoff = min(max(2*backoff, minBackoff), maxBackoff)
				retry = time.After(backoff)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			resend()
		case <-c.wake:
		case <-retry:
			retry = nil
		}
	}
}

// fingerprint is the alert's identity in the queue: the collector's
// fingerprint, or its key when it has none.
func fingerprint(a collector.Alert) string {
	if a.Fingerprint != "" {
		return a.Fingerprint
	}
	k := a.Key
	return k.Host + "\x00" + k.VM + "\x00" + k.Check + "\x00" + k.Code + "\x00" + k.Source
}

// enqueue adds alerts, keeping one state per fingerprint: the newest, so a
// resolve is never overtaken by an older firing state of the same alert.
func (c *Client) enqueue(alerts []collector.Alert) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range alerts {
		fp := fingerprint(a)
		if a.State == collector.AlertResolved {
			if t, ok := c.resolved[fp]; !ok || !a.Updated.Before(t) {
				c.resolved[fp] = a.Updated
			}
		} else if t, ok := c.resolved[fp]; ok && !t.IsZero() && !a.Updated.After(t) {
			continue
		}
		if old, ok := c.pending[fp]; ok {
			if !a.Updated.Before(old.Updated) {
				c.pending[fp] = a
			}
			continue
		}
		c.pending[fp] = a
		c.order = append(c.order, fp)
	}
	c.trim()
}

// requeue puts back a batch that could not be sent, ahead of newer alerts,
// unless a newer state of the same alert has been queued meanwhile.
func (c *Client) requeue(batch []collector.Alert) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var front []string
	for _, a := range batch {
		fp := fingerprint(a)
		if _, ok := c.pending[fp]; ok {
			continue
		}
		if t, ok := c.resolved[fp]; ok && a.State == collector.AlertFiring && !t.IsZero() && !a.Updated.After(t) {
			continue
		}
		c.pending[fp] = a
		front = append(front, fp)
	}
	c.order = append(front, c.order...)
	c.trim()
}

// trim drops the oldest alerts beyond the queue's bound. Called with mu held.
func (c *Client) trim() {
	n := len(c.order) - c.cfg.QueueSize
	if n <= 0 {
		return
	}
	for _, fp := range c.order[:n] {
		delete(c.pending, fp)
	}
	c.order = c.order[n:]
	c.stats.Dropped += uint64(n)
	if now := time.Now(); now.Sub(c.lastDropLog) >= dropLogEvery {
		c.lastDropLog = now
		c.log.Warn("alertmanager_queue_full", "size", c.cfg.QueueSize, "dropped_total", c.stats.Dropped)
	}
}

// pop takes up to maxBatch of the oldest alerts off the queue.
func (c *Client) pop() []collector.Alert {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := min(maxBatch, len(c.order))
	batch := make([]collector.Alert, 0, n)
	for _, fp := range c.order[:n] {
		batch = append(batch, c.pending[fp])
		delete(c.pending, fp)
	}
	c.order = c.order[n:]
	return batch
}

// pruneResolved forgets resolves older than cutoff: by then Alertmanager
// has expired any firing state a late resend could still carry.
func (c *Client) pruneResolved(cutoff time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.DeleteFunc(c.resolved, func(_ string, t time.Time) bool { return t.Before(cutoff) })
}

// send pushes batch to every Alertmanager and reports whether it is done
// with: accepted by at least one (the next resend repairs the others, and
// their copies of firing alerts expire by themselves), or refused as invalid
// by all. It reports false when the batch should be retried.
func (c *Client) send(ctx context.Context, batch []collector.Alert) bool {
	now := time.Now()
	lifetime := lifetimes * c.cfg.ResendInterval
	posts := make([]postableAlert, 0, len(batch))
	sent := make([]map[string]string, len(batch))
	for i, a := range batch {
		p := postable(a, now, lifetime, c.cfg.ExternalURL)
		sent[i] = p.Labels
		if old, ok := c.sentLabels[fingerprint(a)]; ok && !maps.Equal(old.labels, p.Labels) {
			posts = append(posts, postableAlert{Labels: old.labels, Annotations: p.Annotations, StartsAt: p.StartsAt, EndsAt: now})
		}
		posts = append(posts, p)
	}
	for start := 0; start < len(posts); start += maxBatch {
		chunk := posts[start:min(start+maxBatch, len(posts))]
		accepted, retry := c.postAll(ctx, chunk)
		if !accepted && retry {
			return false
		}
		c.mu.Lock()
		if accepted {
			c.stats.Sent += uint64(len(chunk))
		} else {
			c.stats.Rejected += uint64(len(chunk))
		}
		c.mu.Unlock()
	}
	for i, a := range batch {
		fp := fingerprint(a)
		if a.State == collector.AlertResolved {
			delete(c.sentLabels, fp)
		} else {
			c.sentLabels[fp] = sentLabels{labels: sent[i], at: now}
		}
	}
	return true
}

// postAll posts one chunk to every Alertmanager at once, so a dead one
// costs no more than its timeout.
func (c *Client) postAll(ctx context.Context, chunk []postableAlert) (accepted, retry bool) {
	body, err := json.Marshal(chunk)
	if err != nil {
		// Maps of strings and times always marshal; this cannot happen.
		c.log.Error("alertmanager_encode_failed", "err", err)
		return false, false
	}
	errs := make([]error, len(c.cfg.URLs))
	var wg sync.WaitGroup
	for i, u := range c.cfg.URLs {
		wg.Go(func() { errs[i] = c.post(ctx, u, body) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false, true
	}
	for _, err := range errs {
		if err == nil {
			accepted = true
			continue
		}
		c.mu.Lock()
		c.stats.Failed++
		c.mu.Unlock()
		c.log.Warn("alertmanager_post_failed", "alerts", len(chunk), "err", err)
		var se *statusError
		if !errors.As(err, &se) || se.retryable() {
			retry = true
		}
	}
	return accepted, retry
}

// statusError is a non-2xx answer.
type statusError struct {
	url    string
	status string
	code   int
	body   []byte
}

func (e *statusError) Error() string {
	return fmt.Sprintf("POST %s: %s: %q", e.url, e.status, e.body)
}

// retryable says whether the same request may succeed later; any other 4xx
// means Alertmanager found the alerts invalid and always will.
func (e *statusError) retryable() bool {
	return e.code/100 != 4 || e.code == http.StatusRequestTimeout || e.code == http.StatusTooManyRequests
}

// post sends one body to the Alertmanager at base.
func (c *Client) post(ctx context.Context, base string, body []byte) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("alertmanager URL: %w", err)
	}
	u = u.JoinPath("api", "v2", "alerts")
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alertmanager request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	switch {
	case c.cfg.Username != "":
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	case c.cfg.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+c.cfg.BearerToken)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("alertmanager: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		// Reading to the end lets the connection be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return fmt.Errorf("alertmanager: %w", &statusError{url: u.Redacted(), status: resp.Status, code: resp.StatusCode, body: msg})
}
