//go:build !windows

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "standin: named pipes are Windows only; build with GOOS=windows and run it under Wine")
	os.Exit(2)
}
