//go:build !windows

package checks

import (
	"os"
	"syscall"
)

// logsFileID returns the device and inode of a file.
func logsFileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}
