package logs

import (
	"strconv"
	"strings"
)

// kmsgIdent splits "ident: message" or "ident[pid]: message", as
// programs that write to /dev/kmsg format their lines. The kernel's own
// records (facility 0) are left whole: "EXT4-fs error (device vda1): …"
// names no program.
func kmsgIdent(msg string) (ident string, pid int, rest string) {
	i := strings.IndexByte(msg, ':')
	if i <= 0 || i > 64 || strings.ContainsAny(msg[:i], " \t") {
		return "", 0, msg
	}
	ident = msg[:i]
	if j := strings.IndexByte(ident, '['); j > 0 && strings.HasSuffix(ident, "]") {
		pid, _ = strconv.Atoi(ident[j+1 : len(ident)-1])
		ident = ident[:j]
	}
	return ident, pid, strings.TrimLeft(msg[i+1:], " ")
}
