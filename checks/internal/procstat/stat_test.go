package procstat

import "testing"

func TestParseKeepsTheThreadCount(t *testing.T) {
	tests := []struct {
		name, line string
		want       int
	}{
		{"a process without worker threads", "700 (sh) S 1 700 700 0 -1 4194560 1 0 0 0 1 1 0 0 20 0 1 0 5000 8962048 100", 1},
		{"a server with worker threads", "1400 (java) S 1 1400 1400 0 -1 4194560 1 0 0 0 1 1 0 0 20 0 57 0 5000 8962048 100", 57},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.line), 4096)
			if err != nil {
				t.Fatal(err)
			}
			if got.Threads != tt.want {
				t.Errorf("Threads = %d, want %d", got.Threads, tt.want)
			}
		})
	}
}
