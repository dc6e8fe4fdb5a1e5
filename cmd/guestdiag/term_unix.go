//go:build unix

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// fileWidth is the number of columns of the terminal f is, 0 if it is none.
func fileWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}
