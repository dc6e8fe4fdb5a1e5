package webauth

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// readUsers parses a users file: one "name:bcrypt-hash" per line, as
// `htpasswd -B` writes it, blank lines and lines starting with # ignored.
// Only bcrypt hashes are accepted: htpasswd's other formats (MD5 apr1,
// SHA1, crypt) are too weak to keep a dashboard's door.
func readUsers(path string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	users := make(map[string][]byte)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok || name == "":
			return nil, fmt.Errorf("users file %s line %d: want name:bcrypt-hash", path, n)
		case !isBcrypt(hash):
			return nil, fmt.Errorf("users file %s line %d: user %q: hash is not bcrypt ($2y$, $2a$ or $2b$; make it with htpasswd -B)", path, n, name)
		case users[name] != nil:
			return nil, fmt.Errorf("users file %s line %d: user %q appears twice", path, n, name)
		}
		users[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("users file %s: no users", path)
	}
	return users, nil
}

func isBcrypt(h string) bool {
	for _, p := range []string{"$2y$", "$2a$", "$2b$"} {
		if strings.HasPrefix(h, p) {
			return len(h) == 60
		}
	}
	return false
}
