//go:build !unix && !windows

package main

import "os"

// fileWidth is 0: there is no way to ask a terminal's width here.
func fileWidth(*os.File) int { return 0 }
