package regfile

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/guestdiag/guestdiag/protocol"
)

// Decode returns the text of a .reg file: UTF-16LE after a
// byte order mark, else UTF-8 (with or without one).
func Decode(b []byte) (string, error) {
	if len(b) >= 2 && b[0] == 0xFF && b[1] == 0xFE {
		b = b[2:]
		if len(b)%2 != 0 {
			return "", errors.New("utf-16 registry export with an odd number of bytes")
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
		}
		return string(utf16.Decode(u)), nil
	}
	return string(bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))), nil
}

// Value reads one `"name"=value` line of a .reg file, with
// continuation lines already joined. Strings and DWORDs become text;
// hex(2) (REG_EXPAND_SZ) is decoded; hex(b) (QWORD) becomes decimal; other
// binary types are kept as their hex text.
func Value(l string) (name, value string, err error) {
	rest := l
	if strings.HasPrefix(rest, "@=") {
		name, rest = "", rest[1:]
	} else {
		if !strings.HasPrefix(rest, `"`) {
			return "", "", fmt.Errorf("want \"name\"=value, got %q", protocol.Clip(l, 80))
		}
		name, rest, err = quoted(rest)
		if err != nil {
			return "", "", err
		}
	}
	if !strings.HasPrefix(rest, "=") {
		return "", "", fmt.Errorf("value %q: missing =", name)
	}
	rest = rest[1:]
	switch {
	case strings.HasPrefix(rest, `"`):
		value, tail, err := quoted(rest)
		if err != nil || strings.TrimSpace(tail) != "" {
			return "", "", fmt.Errorf("value %q: bad string", name)
		}
		return name, value, nil
	case strings.HasPrefix(rest, "dword:"):
		v, err := strconv.ParseUint(strings.TrimSpace(rest[len("dword:"):]), 16, 32)
		if err != nil {
			return "", "", fmt.Errorf("value %q: %w", name, err)
		}
		return name, strconv.FormatUint(v, 10), nil
	case strings.HasPrefix(rest, "hex"):
		typ, hex, ok := strings.Cut(rest, ":")
		if !ok {
			return "", "", fmt.Errorf("value %q: missing : after hex", name)
		}
		raw, err := hexBytes(hex)
		if err != nil {
			return "", "", fmt.Errorf("value %q: %w", name, err)
		}
		switch typ {
		case "hex(2)", "hex(1)": // REG_EXPAND_SZ, REG_SZ written as hex
			u := make([]uint16, 0, len(raw)/2)
			for i := 0; i+1 < len(raw); i += 2 {
				u = append(u, uint16(raw[i])|uint16(raw[i+1])<<8)
			}
			s := string(utf16.Decode(u))
			s, _, _ = strings.Cut(s, "\x00")
			return name, s, nil
		case "hex(b)": // REG_QWORD, little-endian
			if len(raw) != 8 {
				return "", "", fmt.Errorf("value %q: qword of %d bytes", name, len(raw))
			}
			var v uint64
			for i := 7; i >= 0; i-- {
				v = v<<8 | uint64(raw[i])
			}
			return name, strconv.FormatUint(v, 10), nil
		}
		return name, hex, nil
	}
	return "", "", fmt.Errorf("value %q: unknown type in %q", name, protocol.Clip(rest, 40))
}

// quoted reads a quoted .reg string, in which \\ and \" are the
// only escapes, and returns it with what follows the closing quote.
func quoted(s string) (string, string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) {
				return "", "", errors.New("string ends in a backslash")
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated string")
}

func hexBytes(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []byte
	for _, h := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(h), 16, 8)
		if err != nil {
			return nil, fmt.Errorf("bad hex byte %q", h)
		}
		out = append(out, byte(v))
	}
	return out, nil
}
