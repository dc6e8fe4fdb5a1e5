package protocol

import "testing"

func TestHostUsageLacksTheFigureItsErrorsName(t *testing.T) {
	tests := []struct {
		name   string
		errors []string
		figure string
		want   bool
	}{
		{"no errors lack nothing", nil, "cpu", false},
		{"a cpu times error lacks the cpu", []string{"cpu times: no total"}, "cpu", true},
		{"a cpu count error lacks the cpu too", []string{"cpu count: ENOENT"}, "cpu", true},
		{"a memory error is not a cpu one", []string{"memory: ENOENT"}, "cpu", false},
		{"a memory error lacks mem", []string{"memory: ENOENT"}, "mem", true},
		{"case does not matter", []string{"CPU times: gone"}, "cpu", true},
		{"an error naming cpu later does not count", []string{"load: cpu gone"}, "cpu", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := HostUsage{Errors: tt.errors}
			if got := u.Lacks(tt.figure); got != tt.want {
				t.Errorf("Lacks(%q) with errors %q: got %v, want %v", tt.figure, tt.errors, got, tt.want)
			}
		})
	}
}
