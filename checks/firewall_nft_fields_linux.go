package checks

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file names the fields nftables rules load and prints their values.

func fwMetaOperand(k expr.MetaKey) fwOperand {
	switch k {
	case expr.MetaKeyL4PROTO:
		return fwOperand{name: "meta l4proto", kind: fwKindProto, dep: "l4"}
	case expr.MetaKeyNFPROTO:
		return fwOperand{name: "meta nfproto", kind: fwKindNFProto, dep: "l3"}
	case expr.MetaKeyPROTOCOL:
		return fwOperand{name: "meta protocol", kind: fwKindEtherType, dep: "l3"}
	case expr.MetaKeyIIFNAME:
		return fwOperand{name: "iifname", kind: fwKindIfname}
	case expr.MetaKeyOIFNAME:
		return fwOperand{name: "oifname", kind: fwKindIfname}
	case expr.MetaKeyBRIIIFNAME:
		return fwOperand{name: "meta ibrname", kind: fwKindIfname}
	case expr.MetaKeyBRIOIFNAME:
		return fwOperand{name: "meta obrname", kind: fwKindIfname}
	case expr.MetaKeyIIF:
		return fwOperand{name: "iif", kind: fwKindHostUint}
	case expr.MetaKeyOIF:
		return fwOperand{name: "oif", kind: fwKindHostUint}
	case expr.MetaKeyIIFTYPE:
		return fwOperand{name: "meta iiftype", kind: fwKindHostUint}
	case expr.MetaKeyOIFTYPE:
		return fwOperand{name: "meta oiftype", kind: fwKindHostUint}
	case expr.MetaKeyMARK:
		return fwOperand{name: "meta mark", kind: fwKindHostHex}
	case expr.MetaKeySKUID:
		return fwOperand{name: "meta skuid", kind: fwKindHostUint}
	case expr.MetaKeySKGID:
		return fwOperand{name: "meta skgid", kind: fwKindHostUint}
	case expr.MetaKeyPKTTYPE:
		return fwOperand{name: "meta pkttype", kind: fwKindHostUint}
	case expr.MetaKeyLEN:
		return fwOperand{name: "meta length", kind: fwKindHostUint}
	case expr.MetaKeyPRIORITY:
		return fwOperand{name: "meta priority", kind: fwKindHostHex}
	case expr.MetaKeyNFTRACE:
		return fwOperand{name: "meta nftrace", kind: fwKindHostUint}
	case expr.MetaKeyCGROUP:
		return fwOperand{name: "meta cgroup", kind: fwKindHostUint}
	}
	return fwOperand{name: fmt.Sprintf("meta key %d", k), kind: fwKindHex}
}

func fwCtOperand(k expr.CtKey) fwOperand {
	switch k {
	case expr.CtKeySTATE:
		return fwOperand{name: "ct state", kind: fwKindCtState}
	case expr.CtKeySTATUS:
		return fwOperand{name: "ct status", kind: fwKindHostHex}
	case expr.CtKeyMARK:
		return fwOperand{name: "ct mark", kind: fwKindHostHex}
	case expr.CtKeyDIRECTION:
		return fwOperand{name: "ct direction", kind: fwKindHostUint}
	case expr.CtKeyZONE:
		return fwOperand{name: "ct zone", kind: fwKindHostUint}
	case expr.CtKeyHELPER:
		return fwOperand{name: "ct helper", kind: fwKindIfname}
	case expr.CtKeyL3PROTOCOL:
		return fwOperand{name: "ct l3proto", kind: fwKindNFProto}
	case expr.CtKeyPROTOCOL:
		return fwOperand{name: "ct protocol", kind: fwKindProto}
	}
	return fwOperand{name: fmt.Sprintf("ct key %d", k), kind: fwKindHex}
}

func fwFibOperand(e *expr.Fib) fwOperand {
	var in []string
	for _, f := range []struct {
		on   bool
		name string
	}{{e.FlagSADDR, "saddr"}, {e.FlagDADDR, "daddr"}, {e.FlagMARK, "mark"}, {e.FlagIIF, "iif"}, {e.FlagOIF, "oif"}} {
		if f.on {
			in = append(in, f.name)
		}
	}
	name := "fib " + strings.Join(in, " . ")
	switch {
	case e.ResultOIF:
		return fwOperand{name: name + " oif", kind: fwKindHostUint}
	case e.ResultOIFNAME:
		return fwOperand{name: name + " oifname", kind: fwKindIfname}
	case e.ResultADDRTYPE:
		return fwOperand{name: name + " type", kind: fwKindAddrType}
	}
	return fwOperand{name: name, kind: fwKindHostUint}
}

// fwPayloadOperand names a header field from its base, offset and length
// in the protocol context (l3 "ip" or "ip6", l4 "tcp", "udp", "icmp", ...).
// Unknown fields get nft's raw form, such as "@th,96,32".
func fwPayloadOperand(p *expr.Payload, l3, l4 string) fwOperand {
	off, n := p.Offset, p.Len
	switch p.Base {
	case expr.PayloadBaseNetworkHeader:
		switch l3 {
		case "ip":
			switch {
			case off == 9 && n == 1:
				return fwOperand{name: "ip protocol", kind: fwKindProto, dep: "l4"}
			case off == 12 && n <= 4:
				return fwOperand{name: "ip saddr", kind: fwKindIPv4, prefix: fwPartial(n, 4)}
			case off == 16 && n <= 4:
				return fwOperand{name: "ip daddr", kind: fwKindIPv4, prefix: fwPartial(n, 4)}
			case off == 8 && n == 1:
				return fwOperand{name: "ip ttl", kind: fwKindUint}
			case off == 2 && n == 2:
				return fwOperand{name: "ip length", kind: fwKindUint}
			}
		case "ip6":
			switch {
			case off == 6 && n == 1:
				return fwOperand{name: "ip6 nexthdr", kind: fwKindProto, dep: "l4"}
			case off == 7 && n == 1:
				return fwOperand{name: "ip6 hoplimit", kind: fwKindUint}
			case off == 8 && n <= 16:
				return fwOperand{name: "ip6 saddr", kind: fwKindIPv6, prefix: fwPartial(n, 16)}
			case off == 24 && n <= 16:
				return fwOperand{name: "ip6 daddr", kind: fwKindIPv6, prefix: fwPartial(n, 16)}
			}
		}
	case expr.PayloadBaseTransportHeader:
		switch l4 {
		case "tcp", "udp", "udplite", "sctp", "dccp":
			switch {
			case off == 0 && n == 2:
				return fwOperand{name: l4 + " sport", kind: fwKindUint}
			case off == 2 && n == 2:
				return fwOperand{name: l4 + " dport", kind: fwKindUint}
			case l4 == "tcp" && off == 13 && n == 1:
				return fwOperand{name: "tcp flags", kind: fwKindTCPFlags}
			}
		case "icmp", "icmpv6":
			switch {
			case off == 0 && n == 1:
				return fwOperand{name: l4 + " type", kind: fwKindUint}
			case off == 1 && n == 1:
				return fwOperand{name: l4 + " code", kind: fwKindUint}
			}
		case "":
			switch {
			case off == 0 && n == 2:
				return fwOperand{name: "th sport", kind: fwKindUint}
			case off == 2 && n == 2:
				return fwOperand{name: "th dport", kind: fwKindUint}
			}
		}
	case expr.PayloadBaseLLHeader:
		switch {
		case off == 12 && n == 2:
			return fwOperand{name: "ether type", kind: fwKindEtherType, dep: "l3"}
		case off == 6 && n == 6:
			return fwOperand{name: "ether saddr", kind: fwKindHex}
		case off == 0 && n == 6:
			return fwOperand{name: "ether daddr", kind: fwKindHex}
		}
	}
	base := map[expr.PayloadBase]string{
		expr.PayloadBaseLLHeader:        "ll",
		expr.PayloadBaseNetworkHeader:   "nh",
		expr.PayloadBaseTransportHeader: "th",
	}[p.Base]
	if base == "" {
		base = fmt.Sprintf("base%d", p.Base)
	}
	return fwOperand{name: fmt.Sprintf("@%s,%d,%d", base, off*8, n*8), kind: fwKindHex}
}

// fwPartial returns the prefix length of a load of n of an address's full
// bytes, 0 when all of it is loaded.
func fwPartial(n, full uint32) int {
	if n >= full {
		return 0
	}
	return int(n) * 8
}

// fwImpliedBy says whether the field name makes the pending protocol
// match redundant, as in nft's output.
func fwImpliedBy(name, dep, l3, l4 string) bool {
	switch dep {
	case "l3":
		return l3 != "" && strings.HasPrefix(name, l3+" ")
	case "l4":
		return l4 != "" && strings.HasPrefix(name, l4+" ")
	}
	return false
}

func fwL3Context(kind fwKind, b []byte) string {
	switch kind {
	case fwKindNFProto:
		if len(b) == 1 {
			switch b[0] {
			case unix.NFPROTO_IPV4:
				return "ip"
			case unix.NFPROTO_IPV6:
				return "ip6"
			}
		}
	case fwKindEtherType:
		switch fwBigUint(b) {
		case 0x0800:
			return "ip"
		case 0x86dd:
			return "ip6"
		}
	}
	return ""
}

func fwL4Context(b []byte) string {
	if len(b) != 1 {
		return ""
	}
	switch b[0] {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_UDPLITE:
		return "udplite"
	case unix.IPPROTO_SCTP:
		return "sctp"
	case unix.IPPROTO_DCCP:
		return "dccp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "icmpv6"
	}
	return ""
}

var fwProtoNames = map[byte]string{
	unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_IGMP: "igmp", unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp",
	unix.IPPROTO_GRE: "gre", unix.IPPROTO_ESP: "esp", unix.IPPROTO_AH: "ah", unix.IPPROTO_ICMPV6: "ipv6-icmp",
	unix.IPPROTO_SCTP: "sctp", unix.IPPROTO_DCCP: "dccp", unix.IPPROTO_UDPLITE: "udplite",
}

// fwFormatOperandValue prints the value an immediate put in a register,
// or the register's name when something else filled it.
func fwFormatOperandValue(op fwOperand, kind fwKind) string {
	if op.raw == nil {
		return op.name
	}
	return fwFormatValue(kind, op.raw, 0)
}

// fwFormatValue prints a value compared with a field of this kind. prefix,
// when not 0, is the number of leading bits of an address that count.
func fwFormatValue(kind fwKind, b []byte, prefix int) string {
	switch kind {
	case fwKindIPv4, fwKindIPv6:
		size := 4
		if kind == fwKindIPv6 {
			size = 16
		}
		if len(b) > size {
			break
		}
		full := make([]byte, size)
		copy(full, b)
		var a netip.Addr
		if size == 4 {
			a = netip.AddrFrom4([4]byte(full))
		} else {
			a = netip.AddrFrom16([16]byte(full))
		}
		if prefix > 0 && prefix < size*8 {
			return a.String() + "/" + strconv.Itoa(prefix)
		}
		return a.String()
	case fwKindUint:
		if len(b) <= 8 {
			return strconv.FormatUint(fwBigUint(b), 10)
		}
	case fwKindProto:
		if len(b) == 1 {
			if n, ok := fwProtoNames[b[0]]; ok {
				return n
			}
			return strconv.Itoa(int(b[0]))
		}
	case fwKindNFProto:
		if len(b) == 1 {
			switch b[0] {
			case unix.NFPROTO_IPV4:
				return "ipv4"
			case unix.NFPROTO_IPV6:
				return "ipv6"
			}
			return strconv.Itoa(int(b[0]))
		}
	case fwKindEtherType:
		if len(b) == 2 {
			switch fwBigUint(b) {
			case 0x0800:
				return "ip"
			case 0x86dd:
				return "ip6"
			case 0x0806:
				return "arp"
			case 0x8100:
				return "vlan"
			}
			return fmt.Sprintf("0x%04x", fwBigUint(b))
		}
	case fwKindIfname:
		return strconv.Quote(strings.TrimRight(string(b), "\x00"))
	case fwKindHostUint, fwKindHostHex, fwKindCtState, fwKindAddrType:
		v, ok := fwHostUint(b)
		if !ok {
			break
		}
		switch kind {
		case fwKindHostUint:
			return strconv.FormatUint(v, 10)
		case fwKindHostHex:
			return fmt.Sprintf("0x%08x", v)
		case fwKindCtState:
			return fwFlagNames(v, []string{"invalid", "established", "related", "new", "", "", "untracked"})
		case fwKindAddrType:
			names := []string{"unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole", "unreachable", "prohibit"}
			if v < uint64(len(names)) {
				return names[v]
			}
			return strconv.FormatUint(v, 10)
		}
	case fwKindTCPFlags:
		if len(b) == 1 {
			return fwFlagNames(uint64(b[0]), []string{"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"})
		}
	}
	return "0x" + hex.EncodeToString(b)
}

func fwFlagNames(v uint64, names []string) string {
	if v == 0 {
		return "0"
	}
	var out []string
	for i := 0; i < 64; i++ {
		if v&(1<<i) == 0 {
			continue
		}
		if i < len(names) && names[i] != "" {
			out = append(out, names[i])
		} else {
			out = append(out, fmt.Sprintf("0x%x", uint64(1)<<i))
		}
	}
	return strings.Join(out, ",")
}

func fwBigUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func fwHostUint(b []byte) (uint64, bool) {
	switch len(b) {
	case 1:
		return uint64(b[0]), true
	case 2:
		return uint64(binary.NativeEndian.Uint16(b)), true
	case 4:
		return uint64(binary.NativeEndian.Uint32(b)), true
	case 8:
		return binary.NativeEndian.Uint64(b), true
	}
	return 0, false
}

func fwAllZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// fwPrefixLen says whether mask is a run of ones followed by zeros.
func fwPrefixLen(mask []byte) (int, bool) {
	n, zeros := 0, false
	for _, c := range mask {
		if zeros && c != 0 {
			return 0, false
		}
		ones := bits.LeadingZeros8(^c)
		if c<<ones != 0 {
			return 0, false
		}
		n += ones
		if ones < 8 {
			zeros = true
		}
	}
	return n, true
}

// fwChainHeader describes a chain: "type filter hook input priority 0
// policy drop" for a base chain, "" for a regular one.
func fwChainHeader(c *nftables.Chain) (header, hook, policy string) {
	if c.Hooknum == nil {
		return "", "", ""
	}
	hook = fwHookName(c.Table.Family, *c.Hooknum)
	var prio int32
	if c.Priority != nil {
		prio = int32(*c.Priority)
	}
	header = fmt.Sprintf("type %s hook %s", c.Type, hook)
	if c.Device != "" {
		header += " device " + strconv.Quote(c.Device)
	}
	header += fmt.Sprintf(" priority %d", prio)
	if c.Policy != nil {
		policy = "accept"
		if *c.Policy == nftables.ChainPolicyDrop {
			policy = "drop"
		}
		header += " policy " + policy
	}
	return header, hook, policy
}

func fwHookName(f nftables.TableFamily, h nftables.ChainHook) string {
	if f == nftables.TableFamilyNetdev {
		switch h {
		case unix.NF_NETDEV_INGRESS:
			return "ingress"
		case unix.NF_NETDEV_EGRESS:
			return "egress"
		}
	}
	switch h {
	case unix.NF_INET_PRE_ROUTING:
		return "prerouting"
	case unix.NF_INET_LOCAL_IN:
		return "input"
	case unix.NF_INET_FORWARD:
		return "forward"
	case unix.NF_INET_LOCAL_OUT:
		return "output"
	case unix.NF_INET_POST_ROUTING:
		return "postrouting"
	case 5: // NF_INET_INGRESS, the inet family's ingress hook
		return "ingress"
	}
	return fmt.Sprintf("hook%d", h)
}

func fwFamilyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family%d", f)
}
