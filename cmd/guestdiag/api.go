package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/collector"
)

const defaultAPI = "http://" + collector.DefaultListen

// Caps, in runes after escaping, on what the API may put on the screen.
const (
	maxCellRunes   = 48  // one cell of a table, or one name
	maxChecksRunes = 120 // the names of the checks that are not ok
	maxErrorRunes  = 300 // an error message of the API
	maxTextRunes   = 2000
	maxBodyBytes   = 64 << 20
)

// apiFlags are the flags of every command that asks the collector.
type apiFlags struct {
	url, token string
	timeout    time.Duration
}

func addAPIFlags(fs *flag.FlagSet) *apiFlags {
	f := &apiFlags{}
	fs.StringVar(&f.url, "api", cmp.Or(os.Getenv("GUESTDIAG_API"), defaultAPI), "collector API base `url` (env GUESTDIAG_API)")
	// The token's default is read after parsing, so that -h never prints it.
	fs.StringVar(&f.token, "token", "", "bearer `token` for the API (default: env GUESTDIAG_TOKEN, which, unlike the flag, other users cannot see in ps)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "time limit of the requests")
	return f
}

func (f *apiFlags) client() *client {
	return &client{base: strings.TrimRight(f.url, "/"), token: cmp.Or(f.token, os.Getenv("GUESTDIAG_TOKEN"))}
}

// client asks the collector's JSON API.
type client struct {
	base, token string
}

// apiError is an answer of the API other than 200.
type apiError struct {
	url    string
	status string
	code   int
	body   collector.APIError
}

func (e *apiError) Error() string {
	status := cell(e.status, maxCellRunes)
	if e.body.Error != "" {
		return fmt.Sprintf("%s: %s: %s", e.url, status, cell(e.body.Error, maxErrorRunes))
	}
	return fmt.Sprintf("%s: %s", e.url, status)
}

// statusOf is the HTTP status of an API error, 0 for any other error.
func statusOf(err error) int {
	if e, ok := errors.AsType[*apiError](err); ok {
		return e.code
	}
	return 0
}

// raw GETs path (already escaped) with query and returns the body of a 200.
func (c *client) raw(ctx context.Context, path string, query url.Values) ([]byte, error) {
	return c.do(ctx, http.MethodGet, path, query, nil)
}

// do sends a request with method to path, with body as JSON when not nil,
// and returns the body of a 200.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body []byte) ([]byte, error) {
	u := c.base + path
	if q := query.Encode(); q != "" {
		u += "?" + q
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("bad --api: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the collector API at %s (is `guestdiag up` or guestdiag-collector running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &apiError{url: u, status: resp.Status, code: resp.StatusCode}
		_ = json.Unmarshal(answer, &e.body) // a body that is not an APIError leaves the status alone
		return nil, e
	}
	return answer, nil
}

// get GETs path and decodes the answer into v; what says what v is, for the
// error when the answer is something else.
func (c *client) get(ctx context.Context, path string, query url.Values, v any, what string) error {
	body, err := c.raw(ctx, path, query)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s%s: not %s: %w", c.base, path, what, err)
	}
	return nil
}

func (c *client) vms(ctx context.Context) ([]collector.VM, error) {
	var vms []collector.VM
	return vms, c.get(ctx, "/api/vms", nil, &vms, "a VM list")
}

func (c *client) vm(ctx context.Context, name, host string) (collector.VM, error) {
	var vm collector.VM
	return vm, c.get(ctx, "/api/vms/"+url.PathEscape(name), only("host", host), &vm, "a VM")
}

func (c *client) timeline(ctx context.Context, name, host string) ([]collector.TimelineEvent, error) {
	var events []collector.TimelineEvent
	return events, c.get(ctx, "/api/vms/"+url.PathEscape(name)+"/timeline", only("host", host), &events, "a timeline")
}

func (c *client) alerts(ctx context.Context, f collector.AlertFilter) ([]collector.Alert, error) {
	var alerts []collector.Alert
	return alerts, c.get(ctx, "/api/alerts", alertQuery(f), &alerts, "an alert list")
}

// alertQuery is f as the query of /api/alerts, with empty fields left out.
func alertQuery(f collector.AlertFilter) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"state": string(f.State), "severity": f.Severity, "host": f.Host, "vm": f.VM, "code": f.Code} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func only(key, value string) url.Values {
	if value == "" {
		return nil
	}
	return url.Values{key: {value}}
}
