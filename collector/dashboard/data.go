package dashboard

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Check data as the pages read it (docs/checks.md). The data comes from a
// guest and may have any shape: every scalar is read as text, whatever its
// JSON type, and a field of the wrong shape makes the whole section fall
// back to the escaped pretty JSON, never to an error page.

// text is any JSON scalar shown as text: a string as it is, a number or a
// bool as written, an object or array as compact JSON.
type text string

func (t *text) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = text(clip(s, 2048))
	case string(b) == "null":
		*t = ""
	default:
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			return err
		}
		*t = text(clip(c.String(), 2048))
	}
	return nil
}

func (t text) True() bool { return t == "true" }

type procRow struct {
	PID      text `json:"pid"`
	Name     text `json:"name"`
	User     text `json:"user"`
	CPUPct   text `json:"cpu_pct"`
	RSSBytes text `json:"rss_bytes"`
}

type resourcesData struct {
	Truncated text      `json:"truncated"`
	TopCPU    []procRow `json:"top_cpu"`
	TopMemory []procRow `json:"top_memory"`
	TopError  text      `json:"top_error"`
	CPU       struct {
		UsedPct  text `json:"used_pct"`
		StealPct text `json:"steal_pct"`
		Count    text `json:"count"`
	} `json:"cpu"`
	Memory struct {
		UsedPct    text `json:"used_pct"`
		TotalBytes text `json:"total_bytes"`
	} `json:"memory"`
	Load struct {
		Load1  text `json:"load1"`
		Load5  text `json:"load5"`
		Load15 text `json:"load15"`
	} `json:"load"`
	Disks []struct {
		Mountpoint text `json:"mountpoint"`
		Device     text `json:"device"`
		FSType     text `json:"fstype"`
		UsedPct    text `json:"used_pct"`
		TotalBytes text `json:"total_bytes"`
	} `json:"disks"`
}

type stuckProc struct {
	PID     text `json:"pid"`
	Name    text `json:"name"`
	State   text `json:"state"`
	ForS    text `json:"for_s"`
	Wchan   text `json:"wchan"`
	Cmdline text `json:"cmdline"`
}

type processesData struct {
	Processes []stuckProc `json:"processes"`
	Units     []struct {
		Name     text `json:"name"`
		State    text `json:"state"`
		SubState text `json:"sub_state"`
		Since    text `json:"since"`
		Watched  text `json:"watched"`
	} `json:"units"`
	Probes []struct {
		Name    text `json:"name"`
		Target  text `json:"target"`
		Alive   text `json:"alive"`
		Status  text `json:"http_status"`
		Latency text `json:"latency_ms"`
		Error   text `json:"error"`
	} `json:"probes"`
}

type networkData struct {
	Interface text   `json:"interface"`
	MAC       text   `json:"mac"`
	Addresses []text `json:"addresses"`
	LinkState text   `json:"link_state"`
	Gateway   text   `json:"gateway"`
	Metric    text   `json:"metric"`
	ICMP      text   `json:"icmp"`
	Pings     []struct {
		Role     text `json:"role"`
		Target   text `json:"target"`
		Sent     text `json:"sent"`
		Received text `json:"received"`
		LossPct  text `json:"loss_pct"`
		RTTAvg   text `json:"rtt_avg_ms"`
		Error    text `json:"error"`
	} `json:"pings"`
	DNS *struct {
		Name      text   `json:"name"`
		Addresses []text `json:"addresses"`
		Ms        text   `json:"ms"`
		Error     text   `json:"error"`
	} `json:"dns"`
}

type firewallData struct {
	Enabled      text   `json:"enabled"`
	Reasons      []text `json:"reasons"`
	Sources      []text `json:"sources"`
	Fingerprint  text   `json:"fingerprint"`
	Baseline     text   `json:"baseline_fingerprint"`
	Added        []text `json:"added"`
	Removed      []text `json:"removed"`
	AddedCount   text   `json:"added_count"`
	RemovedCount text   `json:"removed_count"`
	Tables       []struct {
		Name   text `json:"name"`
		Chains text `json:"chains"`
		Rules  text `json:"rules"`
	} `json:"tables"`
}

type softwareData struct {
	Baseline text `json:"baseline"`
	Total    text `json:"total"`
	Changes  []struct {
		Change     text `json:"change"`
		Source     text `json:"source"`
		Name       text `json:"name"`
		Arch       text `json:"arch"`
		Version    text `json:"version"`
		OldVersion text `json:"old_version"`
	} `json:"changes"`
	Omitted text `json:"changes_omitted"`
}

type logsData struct {
	Entries []struct {
		Time     text `json:"time"`
		Source   text `json:"source"`
		Priority text `json:"priority"`
		Unit     text `json:"unit"`
		Provider text `json:"provider"`
		EventID  text `json:"event_id"`
		Message  text `json:"message"`
	} `json:"entries"`
	LeftOut text `json:"entries_left_out"`
}

// decodeData reads raw into v and reports whether it could. Absent data,
// data the collector cut ({"truncated":true}) and data of another shape
// all report false; the page then shows the raw JSON, if any.
func decodeData(raw json.RawMessage, v any) bool {
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	var probe struct {
		Truncated bool `json:"truncated"`
	}
	if json.Unmarshal(raw, &probe) == nil && probe.Truncated {
		return false
	}
	return json.Unmarshal(raw, v) == nil
}

// maxPretty bounds the raw JSON shown for one check.
const maxPretty = 64 << 10

// prettyJSON is raw indented for reading, cleaned of invalid UTF-8 and
// controls, and cut at maxPretty bytes; html/template escapes it.
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return "(not valid JSON) " + clip(string(raw), maxPretty)
	}
	s := b.String()
	if len(s) > maxPretty {
		return clip(s, maxPretty) + "\n(cut at " + strings.TrimSpace(sizeText(maxPretty)) + ")"
	}
	return clean(s)
}

func sizeText(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}
