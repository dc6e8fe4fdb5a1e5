package hostrelay

import (
	"path/filepath"
	"strconv"
	"strings"
)

// qemuVM is what a QEMU command line says about its VM.
type qemuVM struct {
	name     string
	memBytes uint64
	vcpus    int
}

// isQEMU says whether argv0 is a QEMU system emulator: qemu-system-<arch>,
// or the qemu-kvm some distributions install.
func isQEMU(argv0 string) bool {
	base := filepath.Base(argv0)
	return strings.HasPrefix(base, "qemu-system-") || base == "qemu-kvm"
}

// parseQEMUArgs reads -name, -m and -smp from a QEMU command line. QEMU
// takes options with one dash or two, and the value as the next argument.
// In an option value a comma is written ",,".
func parseQEMUArgs(args []string) (qemuVM, bool) {
	var vm qemuVM
	for i := 0; i+1 < len(args); i++ {
		if !strings.HasPrefix(args[i], "-") {
			continue
		}
		val := args[i+1]
		switch strings.TrimPrefix(strings.TrimPrefix(args[i], "-"), "-") {
		case "name":
			vm.name = nameOf(splitOpts(val))
		case "m":
			vm.memBytes = memOf(splitOpts(val))
		case "smp":
			vm.vcpus = cpusOf(splitOpts(val))
		default:
			continue
		}
		i++
	}
	return vm, vm.name != ""
}

// opt is one element of a QEMU option value: key=value, or a bare value
// with key "".
type opt struct{ key, val string }

func splitOpts(s string) []opt {
	var out []opt
	var cur strings.Builder
	flush := func() {
		e := cur.String()
		cur.Reset()
		if k, v, ok := strings.Cut(e, "="); ok {
			out = append(out, opt{k, v})
		} else {
			out = append(out, opt{"", e})
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			flush()
			continue
		}
		cur.WriteByte(s[i])
	}
	flush()
	return out
}

// nameOf reads -name NAME or -name guest=NAME,...; a bare first element is
// the name.
func nameOf(opts []opt) string {
	for i, o := range opts {
		if o.key == "guest" || o.key == "" && i == 0 {
			return o.val
		}
	}
	return ""
}

// memOf reads -m SIZE or -m size=SIZE,...: a number of MiB, or one with a
// suffix k, M, G or T (powers of 1024; an optional trailing B).
func memOf(opts []opt) uint64 {
	for i, o := range opts {
		if o.key == "size" || o.key == "" && i == 0 {
			return parseSize(o.val)
		}
	}
	return 0
}

func parseSize(s string) uint64 {
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "b")
	if s == "" {
		return 0
	}
	shift := 20 // MiB without a suffix
	switch s[len(s)-1] {
	case 'k', 'K':
		shift = 10
	case 'm', 'M':
		shift = 20
	case 'g', 'G':
		shift = 30
	case 't', 'T':
		shift = 40
	default:
		shift = -1
	}
	if shift >= 0 {
		s = s[:len(s)-1]
	} else {
		shift = 20
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || n >= 1<<40 {
		return 0
	}
	return uint64(n * float64(uint64(1)<<shift))
}

// cpusOf reads -smp N[,...] or -smp cpus=N,...; without a count, the
// product of the topology given (sockets, dies, clusters, cores, threads).
func cpusOf(opts []opt) int {
	topo, any := 1, false
	for i, o := range opts {
		n, err := strconv.Atoi(o.val)
		if err != nil || n <= 0 {
			continue
		}
		switch {
		case o.key == "cpus" || o.key == "" && i == 0:
			return n
		case o.key == "sockets" || o.key == "dies" || o.key == "clusters" || o.key == "cores" || o.key == "threads":
			topo *= n
			any = true
		}
	}
	if any {
		return topo
	}
	return 0
}
