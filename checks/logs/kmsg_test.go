package logs

import "testing"

func TestLogsKmsgIdent(t *testing.T) {
	tests := []struct {
		name, in, ident, rest string
		pid                   int
	}{
		{"ident and message", "guestdiag-test: disk failure", "guestdiag-test", "disk failure", 0},
		{"ident with pid", "myapp[1204]: boom", "myapp", "boom", 1204},
		{"no ident", "disk failure: sector 7", "", "disk failure: sector 7", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ident, pid, rest := kmsgIdent(tt.in)
			if ident != tt.ident || pid != tt.pid || rest != tt.rest {
				t.Errorf("got %q %d %q", ident, pid, rest)
			}
		})
	}
}
