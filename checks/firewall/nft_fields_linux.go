package firewall

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

func metaOperand(k expr.MetaKey) operand {
	switch k {
	case expr.MetaKeyL4PROTO:
		return operand{name: "meta l4proto", kind: kindProto, dep: "l4"}
	case expr.MetaKeyNFPROTO:
		return operand{name: "meta nfproto", kind: kindNFProto, dep: "l3"}
	case expr.MetaKeyPROTOCOL:
		return operand{name: "meta protocol", kind: kindEtherType, dep: "l3"}
	case expr.MetaKeyIIFNAME:
		return operand{name: "iifname", kind: kindIfname}
	case expr.MetaKeyOIFNAME:
		return operand{name: "oifname", kind: kindIfname}
	case expr.MetaKeyBRIIIFNAME:
		return operand{name: "meta ibrname", kind: kindIfname}
	case expr.MetaKeyBRIOIFNAME:
		return operand{name: "meta obrname", kind: kindIfname}
	case expr.MetaKeyIIF:
		return operand{name: "iif", kind: kindHostUint}
	case expr.MetaKeyOIF:
		return operand{name: "oif", kind: kindHostUint}
	case expr.MetaKeyIIFTYPE:
		return operand{name: "meta iiftype", kind: kindHostUint}
	case expr.MetaKeyOIFTYPE:
		return operand{name: "meta oiftype", kind: kindHostUint}
	case expr.MetaKeyMARK:
		return operand{name: "meta mark", kind: kindHostHex}
	case expr.MetaKeySKUID:
		return operand{name: "meta skuid", kind: kindHostUint}
	case expr.MetaKeySKGID:
		return operand{name: "meta skgid", kind: kindHostUint}
	case expr.MetaKeyPKTTYPE:
		return operand{name: "meta pkttype", kind: kindHostUint}
	case expr.MetaKeyLEN:
		return operand{name: "meta length", kind: kindHostUint}
	case expr.MetaKeyPRIORITY:
		return operand{name: "meta priority", kind: kindHostHex}
	case expr.MetaKeyNFTRACE:
		return operand{name: "meta nftrace", kind: kindHostUint}
	case expr.MetaKeyCGROUP:
		return operand{name: "meta cgroup", kind: kindHostUint}
	}
	return operand{name: fmt.Sprintf("meta key %d", k), kind: kindHex}
}

func ctOperand(k expr.CtKey) operand {
	switch k {
	case expr.CtKeySTATE:
		return operand{name: "ct state", kind: kindCtState}
	case expr.CtKeySTATUS:
		return operand{name: "ct status", kind: kindHostHex}
	case expr.CtKeyMARK:
		return operand{name: "ct mark", kind: kindHostHex}
	case expr.CtKeyDIRECTION:
		return operand{name: "ct direction", kind: kindHostUint}
	case expr.CtKeyZONE:
		return operand{name: "ct zone", kind: kindHostUint}
	case expr.CtKeyHELPER:
		return operand{name: "ct helper", kind: kindIfname}
	case expr.CtKeyL3PROTOCOL:
		return operand{name: "ct l3proto", kind: kindNFProto}
	case expr.CtKeyPROTOCOL:
		return operand{name: "ct protocol", kind: kindProto}
	}
	return operand{name: fmt.Sprintf("ct key %d", k), kind: kindHex}
}

func fibOperand(e *expr.Fib) operand {
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
		return operand{name: name + " oif", kind: kindHostUint}
	case e.ResultOIFNAME:
		return operand{name: name + " oifname", kind: kindIfname}
	case e.ResultADDRTYPE:
		return operand{name: name + " type", kind: kindAddrType}
	}
	return operand{name: name, kind: kindHostUint}
}

// payloadOperand names a header field from its base, offset and length
// in the protocol context (l3 "ip" or "ip6", l4 "tcp", "udp", "icmp", ...).
// Unknown fields get nft's raw form, such as "@th,96,32".
func payloadOperand(p *expr.Payload, l3, l4 string) operand {
	off, n := p.Offset, p.Len
	switch p.Base {
	case expr.PayloadBaseNetworkHeader:
		switch l3 {
		case "ip":
			switch {
			case off == 9 && n == 1:
				return operand{name: "ip protocol", kind: kindProto, dep: "l4"}
			case off == 12 && n <= 4:
				return operand{name: "ip saddr", kind: kindIPv4, prefix: partial(n, 4)}
			case off == 16 && n <= 4:
				return operand{name: "ip daddr", kind: kindIPv4, prefix: partial(n, 4)}
			case off == 8 && n == 1:
				return operand{name: "ip ttl", kind: kindUint}
			case off == 2 && n == 2:
				return operand{name: "ip length", kind: kindUint}
			}
		case "ip6":
			switch {
			case off == 6 && n == 1:
				return operand{name: "ip6 nexthdr", kind: kindProto, dep: "l4"}
			case off == 7 && n == 1:
				return operand{name: "ip6 hoplimit", kind: kindUint}
			case off == 8 && n <= 16:
				return operand{name: "ip6 saddr", kind: kindIPv6, prefix: partial(n, 16)}
			case off == 24 && n <= 16:
				return operand{name: "ip6 daddr", kind: kindIPv6, prefix: partial(n, 16)}
			}
		}
	case expr.PayloadBaseTransportHeader:
		switch l4 {
		case "tcp", "udp", "udplite", "sctp", "dccp":
			switch {
			case off == 0 && n == 2:
				return operand{name: l4 + " sport", kind: kindUint}
			case off == 2 && n == 2:
				return operand{name: l4 + " dport", kind: kindUint}
			case l4 == "tcp" && off == 13 && n == 1:
				return operand{name: "tcp flags", kind: kindTCPFlags}
			}
		case "icmp", "icmpv6":
			switch {
			case off == 0 && n == 1:
				return operand{name: l4 + " type", kind: kindUint}
			case off == 1 && n == 1:
				return operand{name: l4 + " code", kind: kindUint}
			}
		case "":
			switch {
			case off == 0 && n == 2:
				return operand{name: "th sport", kind: kindUint}
			case off == 2 && n == 2:
				return operand{name: "th dport", kind: kindUint}
			}
		}
	case expr.PayloadBaseLLHeader:
		switch {
		case off == 12 && n == 2:
			return operand{name: "ether type", kind: kindEtherType, dep: "l3"}
		case off == 6 && n == 6:
			return operand{name: "ether saddr", kind: kindHex}
		case off == 0 && n == 6:
			return operand{name: "ether daddr", kind: kindHex}
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
	return operand{name: fmt.Sprintf("@%s,%d,%d", base, off*8, n*8), kind: kindHex}
}

// partial returns the prefix length of a load of n of an address's full
// bytes, 0 when all of it is loaded.
func partial(n, full uint32) int {
	if n >= full {
		return 0
	}
	return int(n) * 8
}

// impliedBy says whether the field name makes the pending protocol
// match redundant, as in nft's output.
func impliedBy(name, dep, l3, l4 string) bool {
	switch dep {
	case "l3":
		return l3 != "" && strings.HasPrefix(name, l3+" ")
	case "l4":
		return l4 != "" && strings.HasPrefix(name, l4+" ")
	}
	return false
}

func l3Context(kind valueKind, b []byte) string {
	switch kind {
	case kindNFProto:
		if len(b) == 1 {
			switch b[0] {
			case unix.NFPROTO_IPV4:
				return "ip"
			case unix.NFPROTO_IPV6:
				return "ip6"
			}
		}
	case kindEtherType:
		switch bigUint(b) {
		case 0x0800:
			return "ip"
		case 0x86dd:
			return "ip6"
		}
	}
	return ""
}

func l4Context(b []byte) string {
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

var protoNames = map[byte]string{
	unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_IGMP: "igmp", unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp",
	unix.IPPROTO_GRE: "gre", unix.IPPROTO_ESP: "esp", unix.IPPROTO_AH: "ah", unix.IPPROTO_ICMPV6: "ipv6-icmp",
	unix.IPPROTO_SCTP: "sctp", unix.IPPROTO_DCCP: "dccp", unix.IPPROTO_UDPLITE: "udplite",
}

// formatOperandValue prints the value an immediate put in a register,
// or the register's name when something else filled it.
func formatOperandValue(op operand, kind valueKind) string {
	if op.raw == nil {
		return op.name
	}
	return formatValue(kind, op.raw, 0)
}

// formatValue prints a value compared with a field of this kind. prefix,
// when not 0, is the number of leading bits of an address that count.
func formatValue(kind valueKind, b []byte, prefix int) string {
	switch kind {
	case kindIPv4, kindIPv6:
		size := 4
		if kind == kindIPv6 {
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
	case kindUint:
		if len(b) <= 8 {
			return strconv.FormatUint(bigUint(b), 10)
		}
	case kindProto:
		if len(b) == 1 {
			if n, ok := protoNames[b[0]]; ok {
				return n
			}
			return strconv.Itoa(int(b[0]))
		}
	case kindNFProto:
		if len(b) == 1 {
			switch b[0] {
			case unix.NFPROTO_IPV4:
				return "ipv4"
			case unix.NFPROTO_IPV6:
				return "ipv6"
			}
			return strconv.Itoa(int(b[0]))
		}
	case kindEtherType:
		if len(b) == 2 {
			switch bigUint(b) {
			case 0x0800:
				return "ip"
			case 0x86dd:
				return "ip6"
			case 0x0806:
				return "arp"
			case 0x8100:
				return "vlan"
			}
			return fmt.Sprintf("0x%04x", bigUint(b))
		}
	case kindIfname:
		return strconv.Quote(strings.TrimRight(string(b), "\x00"))
	case kindHostUint, kindHostHex, kindCtState, kindAddrType:
		v, ok := hostUint(b)
		if !ok {
			break
		}
		switch kind {
		case kindHostUint:
			return strconv.FormatUint(v, 10)
		case kindHostHex:
			return fmt.Sprintf("0x%08x", v)
		case kindCtState:
			return flagNames(v, []string{"invalid", "established", "related", "new", "", "", "untracked"})
		case kindAddrType:
			names := []string{"unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole", "unreachable", "prohibit"}
			if v < uint64(len(names)) {
				return names[v]
			}
			return strconv.FormatUint(v, 10)
		}
	case kindTCPFlags:
		if len(b) == 1 {
			return flagNames(uint64(b[0]), []string{"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"})
		}
	}
	return "0x" + hex.EncodeToString(b)
}

func flagNames(v uint64, names []string) string {
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

func bigUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func hostUint(b []byte) (uint64, bool) {
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

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// prefixLen says whether mask is a run of ones followed by zeros.
func prefixLen(mask []byte) (int, bool) {
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

// chainHeader describes a chain: "type filter hook input priority 0
// policy drop" for a base chain, "" for a regular one.
func chainHeader(c *nftables.Chain) (header, hook, policy string) {
	if c.Hooknum == nil {
		return "", "", ""
	}
	hook = hookName(c.Table.Family, *c.Hooknum)
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

func hookName(f nftables.TableFamily, h nftables.ChainHook) string {
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

func familyName(f nftables.TableFamily) string {
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
