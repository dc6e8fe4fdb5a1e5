package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"

	"golang.org/x/sys/windows"

	"github.com/guestdiag/guestdiag/protocol"
)

func main() {
	pipe := flag.String("pipe", `\\.\pipe\guestdiag-standin`, "pipe `name` to serve")
	ack := flag.Bool("ack", false, "acknowledge every line")
	lines := flag.Int("lines", 0, "exit after this many messages, resumes not counted (0: when the client leaves)")
	flag.Parse()
	if err := serve(*pipe, *ack, *lines); err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(1)
	}
}

func serve(name string, ack bool, lines int) error {
	u16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return err
	}
	h, err := windows.CreateNamedPipe(u16, windows.PIPE_ACCESS_DUPLEX,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT, 1, 64<<10, 64<<10, 0, nil)
	if err != nil {
		return fmt.Errorf("create pipe %s: %w", name, err)
	}
	// The test waits for this line before it starts the agent's clock.
	fmt.Println("# listening", name)
	if err := windows.ConnectNamedPipe(h, nil); err != nil && err != windows.ERROR_PIPE_CONNECTED {
		return fmt.Errorf("connect pipe: %w", err)
	}
	f := os.NewFile(uintptr(h), name)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), protocol.MaxLineLen+1)
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		fmt.Printf("%s\n", line)
		// Every line must be one the relay would accept.
		env, err := protocol.Decode(line)
		if err != nil {
			return fmt.Errorf("line after %d messages: %w", n, err)
		}
		if env.Kind != protocol.KindResume {
			n++
		}
		// A resume opens each connection and is not part of the run's
		// seqs: it is never acknowledged.
		if ack && env.Kind != protocol.KindResume {
			b, err := protocol.Marshal(protocol.NewAck(env.Run, env.Seq))
			if err != nil {
				return err
			}
			if _, err := f.Write(b); err != nil {
				return fmt.Errorf("write ack: %w", err)
			}
		}
		if lines > 0 && n >= lines {
			return nil
		}
	}
	return sc.Err()
}
