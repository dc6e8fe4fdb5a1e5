package protocol

// Clip shortens s to at most n bytes, ending it with "…" when it had to be
// cut, without splitting a UTF-8 sequence. Guests use it to fit their text
// into the limits of this package (MaxSummaryLen, MaxMessageLen, ...).
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	if i < 0 {
		return ""
	}
	return s[:i] + "…"
}
