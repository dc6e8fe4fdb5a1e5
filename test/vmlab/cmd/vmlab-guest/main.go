//go:build linux

// Command vmlab-guest runs inside lab guests and injects the faults the
// checks must detect. It is test equipment, never shipped.
//
//	vmlab-guest serve NAME     run shell commands sent over the virtio-serial port NAME
//	vmlab-guest hog [PERCENT]  burn one CPU (or PERCENT of it, in 100 ms periods) until killed
//	vmlab-guest nft-drop PORT  add table inet vmlab, an input chain and a rule dropping tcp dport PORT, over netlink
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vmlab-guest serve NAME | hog [PERCENT] | nft-drop PORT")
		os.Exit(64)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		if len(os.Args) != 3 {
			err = errors.New("serve wants a port name")
			break
		}
		err = serve(os.Args[2])
	case "hog":
		pct := uint64(100)
		if len(os.Args) == 3 {
			if pct, err = strconv.ParseUint(os.Args[2], 10, 8); err == nil && (pct == 0 || pct > 100) {
				err = fmt.Errorf("hog percent %d is not 1..100", pct)
			}
		}
		if err == nil {
			hog(time.Duration(pct) * time.Millisecond)
		}
	case "nft-drop":
		if len(os.Args) != 3 {
			err = errors.New("nft-drop wants a tcp port")
			break
		}
		var port uint64
		if port, err = strconv.ParseUint(os.Args[2], 10, 16); err == nil {
			err = nftDrop(uint16(port))
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmlab-guest:", err)
		os.Exit(1)
	}
}

// Reply is what serve writes back for each command: one JSON line.
type Reply struct {
	Exit   int    `json:"exit"`
	Output string `json:"output"`
}

// serve reads one shell command per line from the named virtio-serial port
// and answers each with a Reply once the command has finished. A command
// ending in & keeps running after its reply.
func serve(name string) error {
	dev, err := findPort(name)
	if err != nil {
		return err
	}
	for {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		r := bufio.NewReader(f)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				// EOF while the host side is away: poll until it is back.
				break
			}
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			b, _ := json.Marshal(run(line))
			if _, err := f.Write(append(b, '\n')); err != nil {
				break
			}
		}
		f.Close()
		time.Sleep(200 * time.Millisecond)
	}
}

// run runs line with its output in a file rather than a pipe, so that a
// background job it starts does not hold the reply back.
func run(line string) Reply {
	out, err := os.CreateTemp("", "vmlab-out")
	if err != nil {
		return Reply{Exit: -1, Output: err.Error()}
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.Stdout, cmd.Stderr = out, out
	rep := Reply{}
	if err := cmd.Run(); err != nil {
		rep.Exit = -1
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			rep.Exit = ee.ExitCode()
		}
	}
	b, _ := os.ReadFile(out.Name())
	rep.Output = string(b)
	return rep
}

func findPort(name string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		paths, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == name {
				return "/dev/" + filepath.Base(filepath.Dir(p)), nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("no virtio-serial port named %s", name)
}

// hog burns busy of every 100 ms, all of it at 100 ms. The guest's clock
// follows the host's, so a hog of 40 ms costs the host at most 40 % of a
// CPU however busy the host is: a bounded load.
func hog(busy time.Duration) {
	x := uint64(1)
	for period := time.Now(); ; period = period.Add(100 * time.Millisecond) {
		for busy == 100*time.Millisecond || time.Since(period) < busy {
			x = x*6364136223846793005 + 1442695040888963407
			if x == 0 {
				fmt.Fprint(io.Discard, x)
			}
		}
		if d := time.Until(period.Add(100 * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
	}
}

// nftDrop is what an administrator's "nft add rule inet vmlab input tcp
// dport PORT drop" does, done over netlink because the guest has no nft.
func nftDrop(port uint16) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "vmlab"})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	dport := make([]byte, 2)
	binary.BigEndian.PutUint16(dport, port)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dport},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return c.Flush()
}
