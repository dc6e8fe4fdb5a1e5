package dashboard

import "testing"

func TestClean(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain text is kept", "web-1.example", "web-1.example"},
		{"tabs and newlines are kept", "a\tb\nc", "a\tb\nc"},
		{"an escape sequence becomes visible", "\x1b[31mred", `\x1b[31mred`},
		{"invalid UTF-8 becomes U+FFFD", "a\xffb", "a\uFFFDb"},
		{"a control after non-ASCII text is still caught", "é\xff\x1b", "é\uFFFD\\x1b"},
		{"a right-to-left override becomes visible", "abc\u202etxt.exe", `abc\u202etxt.exe`},
		{"a C1 control becomes visible", "a\u0085b", `a\u0085b`},
		{"other Unicode is kept", "Grüße 日本", "Grüße 日本"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clean(tt.in); got != tt.want {
				t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
