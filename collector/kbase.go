package collector

import (
	"sync/atomic"

	"github.com/guestdiag/guestdiag/kb"
	"github.com/guestdiag/guestdiag/protocol"
)

// kbHolder holds the current knowledge base; ReloadKB swaps it whole, so
// a finding is matched against one version or the other, never a mix.
type kbHolder struct{ cur atomic.Pointer[kb.KB] }

// KB returns the knowledge base findings are matched against now.
func (c *Collector) KB() *kb.KB { return c.kb.cur.Load() }

// ReloadKB loads the shipped entries and those in cfg.KBDirs and swaps them
// in. Each bad operator file is logged and skipped (kb.Load), so a typo
// never takes the knowledge base down; the errors are returned for the
// caller to report. The collector's main calls it on SIGHUP.
func (c *Collector) ReloadKB() []error {
	k, errs := kb.Load(c.log, c.cfg.KBDirs...)
	c.kb.cur.Store(k)
	return errs
}

func (c *Collector) matcher() Matcher {
	if c.cfg.Matcher != nil {
		return c.cfg.Matcher
	}
	if k := c.kb.cur.Load(); k != nil {
		return k
	}
	return nil
}

// SearchKB searches the current knowledge base, for the dashboard.
func (c *Collector) SearchKB(query string, limit int) []*kb.Entry {
	return c.KB().Search(query, limit)
}

// MatchKB returns the knowledge-base entries for finding f of v, the ones
// an alert raised by it carries, for findings that raise none (info) or
// whose alert is not loaded yet.
func (c *Collector) MatchKB(v *VM, f *protocol.Finding) []*kb.Entry {
	if m := c.matcher(); m != nil {
		return m.Match(kbFinding(v, f))
	}
	return nil
}
