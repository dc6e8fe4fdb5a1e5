package protocol_test

import (
	"testing"

	"github.com/guestdiag/guestdiag/protocol"
)

func TestOutcomeSubject(t *testing.T) {
	tests := []struct {
		name, plan, move, want string
	}{
		{"a move is numbered under its plan", "p1", "p1/3", "guestdiag.plan.p1.3"},
		{"dots in the plan id stay in one token", "20260102T030405.000Z-s1", "20260102T030405.000Z-s1/12", "guestdiag.plan.20260102T030405~2E000Z-s1.12"},
		{"wildcards cannot widen the subject", "p>", "p>/*", "guestdiag.plan.p~3E.~2A"},
		{"a move id of another form is kept whole", "p1", "x/1", "guestdiag.plan.p1.x~2F1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protocol.OutcomeSubject(tt.plan, tt.move); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
