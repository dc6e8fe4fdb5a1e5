package processes

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"

	"github.com/guestdiag/guestdiag/checks"
)

// stateKey is where the followed processes are saved in the check's state.
const stateKey = "followed"

// savedFollowed is the state file: the followed processes and threads with
// their timers, and the boot they belong to, since start times count from
// boot and a pid and start time may come again after a reboot.
type savedFollowed struct {
	BootID string      `json:"boot_id"`
	Tasks  []savedTask `json:"tasks"`
}

// savedTask is one followed process (ID its pid) or thread (ID its tid).
type savedTask struct {
	ID    int       `json:"id"`
	Start uint64    `json:"start"`
	Seen  seenState `json:"seen"`
}

// restore follows on from what an earlier agent saved in st, so that a
// restart does not reset how long a process has been hung. Nothing is
// restored from another boot, or from a file that does not decode.
func (p *Processes) restore(st *checks.State) {
	p.state = st
	p.bootID = p.src.bootID()
	var saved savedFollowed
	ok, err := st.Load(stateKey, &saved)
	if err != nil {
		p.logger.Warn("processes_state_unreadable", "err", err)
		return
	}
	if !ok || saved.BootID != p.bootID {
		return
	}
	for _, t := range saved.Tasks {
		p.seen[key{t.ID, t.Start}] = t.Seen
	}
	p.saved, _ = json.Marshal(p.followed())
}

// save writes the followed processes when they changed since the last
// save: a sample that finds nothing new writes nothing.
func (p *Processes) save() {
	if p.state == nil {
		return
	}
	f := p.followed()
	b, err := json.Marshal(f)
	if err != nil || bytes.Equal(b, p.saved) {
		return
	}
	if err := p.state.Save(stateKey, f); err != nil {
		p.logger.Warn("processes_state_not_saved", "err", err)
		return
	}
	p.saved = b
}

// followed is the state file's contents, in a stable order so that equal
// contents compare equal.
func (p *Processes) followed() savedFollowed {
	f := savedFollowed{BootID: p.bootID, Tasks: make([]savedTask, 0, len(p.seen))}
	for k, s := range p.seen {
		f.Tasks = append(f.Tasks, savedTask{ID: k.PID, Start: k.Start, Seen: s})
	}
	slices.SortFunc(f.Tasks, func(a, b savedTask) int {
		if a.ID != b.ID {
			return a.ID - b.ID
		}
		return cmp.Compare(a.Start, b.Start)
	})
	return f
}
