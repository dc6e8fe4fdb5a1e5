package protocol

import (
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		want     string
	}{
		{"a short string is kept", "disk full", 64, "disk full"},
		{"a long one ends in an ellipsis within n bytes", "abcdefghij", 8, "abcde…"},
		{"a multi-byte character is not split", "ääää", 6, "ä…"},
		{"a limit below the ellipsis gives nothing", "abcdef", 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Clip(tt.in, tt.n)
			if got != tt.want || len(got) > tt.n || !utf8.ValidString(got) {
				t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}
