//go:build linux

// Command portecho runs inside a vmlab guest. It finds the virtio-serial port named
// by -name through sysfs (a busybox guest has no udev to make
// /dev/virtio-ports/<name>) and writes "hello from <hostname>" to it -n times.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	name := flag.String("name", "org.guestdiag.agent.0", "virtio-serial port name")
	count := flag.Int("n", 3, "lines to write")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*name, *count, time.Now().Add(*timeout)); err != nil {
		fmt.Fprintf(os.Stderr, "portecho: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("portecho: wrote %d lines\n", *count)
}

func run(name string, count int, deadline time.Time) error {
	dev, err := findPort(name)
	if err != nil {
		return err
	}
	// Non-blocking: while no host side is connected the port would block writes
	// forever; with O_NONBLOCK they fail with EAGAIN and we retry until the deadline.
	fd, err := syscall.Open(dev, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer syscall.Close(fd)
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	line := []byte("hello from " + host + "\n")
	for i := 0; i < count; {
		if time.Now().After(deadline) {
			return fmt.Errorf("write %s: no host side connected in time", dev)
		}
		n, err := syscall.Write(fd, line)
		switch {
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENODEV):
			time.Sleep(100 * time.Millisecond)
		case err != nil:
			return fmt.Errorf("write %s: %w", dev, err)
		case n != len(line):
			return fmt.Errorf("write %s: short write %d of %d", dev, n, len(line))
		default:
			i++
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func findPort(name string) (string, error) {
	paths, err := filepath.Glob("/sys/class/virtio-ports/vport*/name")
	if err != nil {
		return "", err
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(p)), nil
		}
	}
	return "", fmt.Errorf("no virtio port named %s among %d ports", name, len(paths))
}
