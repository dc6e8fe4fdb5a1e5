package checks

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file renders nftables rules, as google/nftables decodes them from
// netlink, into stable text close to what `nft list ruleset` prints: "tcp
// dport 22 accept", "ct state established,related accept". It knows the
// common expressions; any other is printed as its name and its fields in
// JSON, which is stable too. Handles and counter values are never printed,
// so the text changes only when the ruleset does.

// fwKind says how to print the value of a register.
type fwKind int

const (
	fwKindHex fwKind = iota
	fwKindIPv4
	fwKindIPv6
	fwKindUint // big endian, as in packet headers
	fwKindProto
	fwKindNFProto
	fwKindEtherType
	fwKindIfname
	fwKindHostUint // host byte order, as meta and ct keep it
	fwKindHostHex
	fwKindCtState
	fwKindTCPFlags
	fwKindAddrType
)

// fwOperand is what a register holds: the name of what was loaded into it
// and how to print values compared with it.
type fwOperand struct {
	name   string
	kind   fwKind
	prefix int    // bits of an address compared, when fewer than all
	mask   []byte // a bitwise mask applied to it, other than a prefix
	xor    []byte
	dep    string // "l3" or "l4" when a match on it only sets the protocol context
	raw    []byte // the value of an immediate
}

// fwSetInfo is a set a rule looks up: anonymous sets are printed with their
// elements, named ones by name (their elements are data, often dynamic).
type fwSetInfo struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

type fwRuleRenderer struct {
	family  nftables.TableFamily
	sets    func(name string) (fwSetInfo, bool)
	regs    map[uint32]fwOperand
	l3, l4  string
	out     []string
	pending string // a protocol match that the next field may make redundant
	pendDep string
}

// fwRenderRule returns the text of a rule and whether it drops or rejects
// every packet that reaches it.
func fwRenderRule(family nftables.TableFamily, r *nftables.Rule, sets func(string) (fwSetInfo, bool)) (string, bool) {
	rr := &fwRuleRenderer{family: family, sets: sets, regs: map[uint32]fwOperand{}}
	switch family {
	case nftables.TableFamilyIPv4:
		rr.l3 = "ip"
	case nftables.TableFamilyIPv6:
		rr.l3 = "ip6"
	}
	for _, e := range r.Exprs {
		rr.expr(e)
	}
	rr.flush()
	if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && c != "" {
		rr.out = append(rr.out, "comment "+strconv.Quote(c))
	}
	return strings.Join(rr.out, " "), fwUnconditionalDrop(r.Exprs)
}

// fwUnconditionalDrop is true for rules such as "counter drop" or "log
// reject": nothing but counting and logging before a drop or reject.
func fwUnconditionalDrop(es []expr.Any) bool {
	if len(es) == 0 {
		return false
	}
	for _, e := range es[:len(es)-1] {
		switch e.(type) {
		case *expr.Counter, *expr.Log:
		default:
			return false
		}
	}
	switch e := es[len(es)-1].(type) {
	case *expr.Verdict:
		return e.Kind == expr.VerdictDrop
	case *expr.Reject:
		return true
	}
	return false
}

func (rr *fwRuleRenderer) emit(s string) {
	rr.flush()
	rr.out = append(rr.out, s)
}

func (rr *fwRuleRenderer) flush() {
	if rr.pending != "" {
		rr.out = append(rr.out, rr.pending)
		rr.pending, rr.pendDep = "", ""
	}
}

func (rr *fwRuleRenderer) reg(r uint32) fwOperand {
	if op, ok := rr.regs[r]; ok {
		return op
	}
	return fwOperand{name: fmt.Sprintf("reg%d", r)}
}

func (rr *fwRuleRenderer) expr(e expr.Any) {
	if p, ok := e.(*expr.Payload); ok && p.OperationType == expr.PayloadLoad {
		op := fwPayloadOperand(p, rr.l3, rr.l4)
		// "meta l4proto tcp" before "tcp dport" only makes the field valid.
		if rr.pendDep != "" && fwImpliedBy(op.name, rr.pendDep, rr.l3, rr.l4) {
			rr.pending, rr.pendDep = "", ""
		}
		rr.flush()
		rr.regs[p.DestRegister] = op
		return
	}
	rr.flush()
	switch e := e.(type) {
	case *expr.Meta:
		op := fwMetaOperand(e.Key)
		if e.SourceRegister {
			rr.emit(op.name + " set " + fwFormatOperandValue(rr.reg(e.Register), op.kind))
			return
		}
		rr.regs[e.Register] = op
	case *expr.Ct:
		op := fwCtOperand(e.Key)
		if e.SourceRegister {
			rr.emit(op.name + " set " + fwFormatOperandValue(rr.reg(e.Register), op.kind))
			return
		}
		rr.regs[e.Register] = op
	case *expr.Payload: // a write
		rr.emit(fmt.Sprintf("%s set %s", fwPayloadOperand(e, rr.l3, rr.l4).name, rr.reg(e.SourceRegister).name))
	case *expr.Fib:
		rr.regs[e.Register] = fwFibOperand(e)
	case *expr.Bitwise:
		op := rr.reg(e.SourceRegister)
		if (op.kind == fwKindIPv4 || op.kind == fwKindIPv6) && fwAllZero(e.Xor) {
			if n, ok := fwPrefixLen(e.Mask); ok {
				op.prefix = n
				rr.regs[e.DestRegister] = op
				return
			}
		}
		op.mask, op.xor = e.Mask, e.Xor
		rr.regs[e.DestRegister] = op
	case *expr.Cmp:
		rr.cmp(e)
	case *expr.Range:
		op := rr.reg(e.Register)
		neg := ""
		if e.Op == expr.CmpOpNeq {
			neg = "!= "
		}
		rr.emit(fmt.Sprintf("%s %s%s-%s", op.name, neg, fwFormatValue(op.kind, e.FromData, 0), fwFormatValue(op.kind, e.ToData, 0)))
	case *expr.Lookup:
		rr.lookup(e)
	case *expr.Immediate:
		rr.regs[e.Register] = fwOperand{name: "0x" + hex.EncodeToString(e.Data), raw: e.Data}
	case *expr.Verdict:
		rr.emit(fwVerdictText(e))
	case *expr.Counter:
		rr.emit("counter")
	case *expr.Log:
		rr.emit(fwLogText(e))
	case *expr.Limit:
		rr.emit(fwLimitText(e))
	case *expr.Quota:
		over := ""
		if e.Over {
			over = "over "
		}
		rr.emit(fmt.Sprintf("quota %s%d bytes", over, e.Bytes))
	case *expr.Reject:
		rr.emit(fwRejectText(e))
	case *expr.Notrack:
		rr.emit("notrack")
	case *expr.Objref:
		rr.emit(fmt.Sprintf("%s name %s", fwObjrefType(e.Type), strconv.Quote(e.Name)))
	case *expr.Masq:
		rr.emit("masquerade" + fwNATFlags(e.Random, e.FullyRandom, e.Persistent))
	case *expr.Redir:
		s := "redirect"
		if e.RegisterProtoMin != 0 {
			s += " to :" + fwFormatOperandValue(rr.reg(e.RegisterProtoMin), fwKindUint)
		}
		rr.emit(s)
	case *expr.NAT:
		rr.emit(rr.natText(e))
	case *expr.Dynset:
		rr.emit(rr.dynsetText(e))
	default:
		rr.emit(fwGenericText(e))
	}
}

func (rr *fwRuleRenderer) cmp(e *expr.Cmp) {
	op := rr.reg(e.Register)
	if op.mask != nil {
		rr.emit(fwMaskedMatch(op, e))
		return
	}
	val := fwFormatValue(op.kind, e.Data, op.prefix)
	text := op.name + " " + fwCmpOp(e.Op) + val
	if e.Op == expr.CmpOpEq && op.dep != "" {
		// Remember the protocol: it names the fields loaded after it.
		switch op.dep {
		case "l3":
			rr.l3 = fwL3Context(op.kind, e.Data)
		case "l4":
			rr.l4 = fwL4Context(e.Data)
		}
		rr.flush()
		rr.pending, rr.pendDep = text, op.dep
		return
	}
	rr.emit(text)
}

func fwCmpOp(op expr.CmpOp) string {
	switch op {
	case expr.CmpOpEq:
		return ""
	case expr.CmpOpNeq:
		return "!= "
	case expr.CmpOpLt:
		return "< "
	case expr.CmpOpLte:
		return "<= "
	case expr.CmpOpGt:
		return "> "
	case expr.CmpOpGte:
		return ">= "
	}
	return fmt.Sprintf("op%d ", op)
}

// fwMaskedMatch prints a comparison after a bitwise mask. "ct state
// established,related" is nft's short form of (state & mask) != 0.
func fwMaskedMatch(op fwOperand, e *expr.Cmp) string {
	flags := op.kind == fwKindCtState || op.kind == fwKindTCPFlags
	if flags && e.Op == expr.CmpOpNeq && fwAllZero(e.Data) && fwAllZero(op.xor) {
		return op.name + " " + fwFormatValue(op.kind, op.mask, 0)
	}
	s := op.name + " & " + fwFormatValue(op.kind, op.mask, 0)
	if !fwAllZero(op.xor) {
		s += " ^ " + fwFormatValue(fwKindHex, op.xor, 0)
	}
	o := fwCmpOp(e.Op)
	if o == "" {
		o = "== "
	}
	return s + " " + o + fwFormatValue(op.kind, e.Data, 0)
}

func (rr *fwRuleRenderer) lookup(e *expr.Lookup) {
	op := rr.reg(e.SourceRegister)
	neg := ""
	if e.Invert {
		neg = "!= "
	}
	vmap := e.IsDestRegSet && e.DestRegister == unix.NFT_REG_VERDICT
	set := rr.setText(e.SetName, op.kind, vmap)
	switch {
	case vmap:
		rr.emit(op.name + " vmap " + set)
	case e.IsDestRegSet:
		rr.regs[e.DestRegister] = fwOperand{name: op.name + " map " + set}
	default:
		rr.emit(op.name + " " + neg + set)
	}
}

// setText prints a named set as @name and an anonymous one as its
// elements: its kernel name (__set0) depends on the order rules were
// added, its contents do not.
func (rr *fwRuleRenderer) setText(name string, kind fwKind, vmap bool) string {
	info, ok := rr.sets(name)
	if !ok || !info.set.Anonymous {
		return "@" + name
	}
	return "{ " + strings.Join(fwSetElements(info, kind, vmap), ", ") + " }"
}

// fwSetElements prints the elements of a set sorted by key; the kernel
// keeps intervals as a start element and an end element one past the
// last value, which this pairs back into ranges and prefixes.
func fwSetElements(info fwSetInfo, kind fwKind, vmap bool) []string {
	elems := slices.Clone(info.elems)
	hostOrder := kind == fwKindHostUint || kind == fwKindHostHex || kind == fwKindCtState || kind == fwKindAddrType
	key := func(b []byte) []byte {
		if hostOrder && binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
			r := slices.Clone(b)
			slices.Reverse(r)
			return r
		}
		return b
	}
	slices.SortStableFunc(elems, func(a, b nftables.SetElement) int { return bytes.Compare(key(a.Key), key(b.Key)) })
	var out []string
	withVerdict := func(s string, el nftables.SetElement) string {
		if el.VerdictData != nil {
			return s + " : " + fwVerdictText(el.VerdictData)
		}
		if v, ok := fwDecodeVerdict(el.Val); vmap && ok {
			return s + " : " + fwVerdictText(v)
		}
		if info.set.IsMap && len(el.Val) > 0 {
			return s + " : 0x" + hex.EncodeToString(el.Val)
		}
		return s
	}
	if !info.set.Interval {
		for _, el := range elems {
			if el.IntervalEnd {
				continue
			}
			s := fwFormatValue(kind, el.Key, 0)
			if len(el.KeyEnd) > 0 {
				s += "-" + fwFormatValue(kind, el.KeyEnd, 0)
			}
			out = append(out, withVerdict(s, el))
		}
		return out
	}
	for i, el := range elems {
		if el.IntervalEnd {
			continue
		}
		var last []byte
		if i+1 < len(elems) && elems[i+1].IntervalEnd {
			last = fwMinusOne(key(elems[i+1].Key))
		} else {
			last = bytes.Repeat([]byte{0xff}, len(el.Key))
		}
		if hostOrder {
			last = key(last) // back to host order
		}
		out = append(out, withVerdict(fwRangeText(kind, el.Key, last), el))
	}
	return out
}

// fwDecodeVerdict decodes the data of a verdict map element, which
// google/nftables leaves as the netlink attributes NFTA_VERDICT_CODE and
// NFTA_VERDICT_CHAIN.
func fwDecodeVerdict(b []byte) (*expr.Verdict, bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, false
	}
	ad.ByteOrder = binary.BigEndian
	var v expr.Verdict
	code := false
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Kind, code = expr.VerdictKind(int32(ad.Uint32())), true
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	return &v, code && ad.Err() == nil
}

// fwRangeText prints [first, last] as one value, a prefix, or a range.
func fwRangeText(kind fwKind, first, last []byte) string {
	if bytes.Equal(first, last) {
		return fwFormatValue(kind, first, 0)
	}
	if kind == fwKindIPv4 || kind == fwKindIPv6 {
		if n, ok := fwRangePrefix(first, last); ok {
			return fwFormatValue(kind, first, n)
		}
	}
	return fwFormatValue(kind, first, 0) + "-" + fwFormatValue(kind, last, 0)
}

// fwRangePrefix says whether [first, last] is exactly one prefix.
func fwRangePrefix(first, last []byte) (int, bool) {
	if len(first) != len(last) {
		return 0, false
	}
	n := 0
	for i := range first {
		x := first[i] ^ last[i]
		if x == 0 && n == i*8 {
			n += 8
			continue
		}
		if n == i*8 {
			n += bits.LeadingZeros8(x)
		}
		break
	}
	for i := range first {
		for b := 0; b < 8; b++ {
			bit := i*8 + b
			if bit < n {
				continue
			}
			m := byte(0x80 >> b)
			if first[i]&m != 0 || last[i]&m == 0 {
				return 0, false
			}
		}
	}
	return n, true
}

func fwMinusOne(b []byte) []byte {
	r := slices.Clone(b)
	for i := len(r) - 1; i >= 0; i-- {
		r[i]--
		if r[i] != 0xff {
			break
		}
	}
	return r
}

func (rr *fwRuleRenderer) natText(e *expr.NAT) string {
	s := "snat"
	if e.Type == expr.NATTypeDestNAT {
		s = "dnat"
	}
	addrKind := fwKindHex
	switch e.Family {
	case unix.NFPROTO_IPV4:
		addrKind, s = fwKindIPv4, s+" ip"
	case unix.NFPROTO_IPV6:
		addrKind, s = fwKindIPv6, s+" ip6"
	}
	to := ""
	if e.RegAddrMin != 0 {
		to = fwFormatOperandValue(rr.reg(e.RegAddrMin), addrKind)
		if e.RegAddrMax != 0 && e.RegAddrMax != e.RegAddrMin {
			to += "-" + fwFormatOperandValue(rr.reg(e.RegAddrMax), addrKind)
		}
	}
	if e.RegProtoMin != 0 {
		to += ":" + fwFormatOperandValue(rr.reg(e.RegProtoMin), fwKindUint)
		if e.RegProtoMax != 0 && e.RegProtoMax != e.RegProtoMin {
			to += "-" + fwFormatOperandValue(rr.reg(e.RegProtoMax), fwKindUint)
		}
	}
	if to != "" {
		s += " to " + to
	}
	return s + fwNATFlags(e.Random, e.FullyRandom, e.Persistent)
}

func fwNATFlags(random, fully, persistent bool) string {
	var f []string
	if random {
		f = append(f, "random")
	}
	if fully {
		f = append(f, "fully-random")
	}
	if persistent {
		f = append(f, "persistent")
	}
	if len(f) == 0 {
		return ""
	}
	return " " + strings.Join(f, ",")
}

func (rr *fwRuleRenderer) dynsetText(e *expr.Dynset) string {
	op := "add"
	if e.Operation == unix.NFT_DYNSET_OP_UPDATE {
		op = "update"
	}
	inner := &fwRuleRenderer{family: rr.family, sets: rr.sets, regs: rr.regs, l3: rr.l3, l4: rr.l4}
	for _, x := range e.Exprs {
		inner.expr(x)
	}
	inner.flush()
	s := op + " @" + e.SetName + " { " + rr.reg(e.SrcRegKey).name
	if e.Timeout > 0 {
		s += " timeout " + e.Timeout.String()
	}
	if len(inner.out) > 0 {
		s += " " + strings.Join(inner.out, " ")
	}
	return s + " }"
}

// fwGenericText prints an expression this file has no words for: its
// type and its fields in JSON, which are configuration (the expressions
// with running values, counter and quota, have words above).
func fwGenericText(e expr.Any) string {
	name := strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."))
	b, err := json.Marshal(e)
	if err != nil {
		return name
	}
	return name + " " + string(b)
}

func fwVerdictText(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictContinue:
		return "continue"
	case expr.VerdictBreak:
		return "break"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictQueue:
		return "queue"
	case expr.VerdictStolen:
		return "stolen"
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}

var fwLogLevels = []string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit"}

func fwLogText(e *expr.Log) string {
	s := "log"
	has := func(attr int) bool { return e.Key&(1<<attr) != 0 }
	if has(unix.NFTA_LOG_PREFIX) || len(e.Data) > 0 {
		s += " prefix " + strconv.Quote(strings.TrimRight(string(e.Data), "\x00"))
	}
	if has(unix.NFTA_LOG_GROUP) {
		s += fmt.Sprintf(" group %d", e.Group)
	}
	if has(unix.NFTA_LOG_SNAPLEN) {
		s += fmt.Sprintf(" snaplen %d", e.Snaplen)
	}
	if has(unix.NFTA_LOG_QTHRESHOLD) {
		s += fmt.Sprintf(" queue-threshold %d", e.QThreshold)
	}
	if has(unix.NFTA_LOG_LEVEL) {
		if int(e.Level) < len(fwLogLevels) {
			s += " level " + fwLogLevels[e.Level]
		} else {
			s += fmt.Sprintf(" level %d", e.Level)
		}
	}
	if has(unix.NFTA_LOG_FLAGS) && e.Flags != 0 {
		s += fmt.Sprintf(" flags 0x%x", uint32(e.Flags))
	}
	return s
}

func fwLimitText(e *expr.Limit) string {
	over := ""
	if e.Over {
		over = "over "
	}
	unit := map[expr.LimitTime]string{
		expr.LimitTimeSecond: "second", expr.LimitTimeMinute: "minute", expr.LimitTimeHour: "hour",
		expr.LimitTimeDay: "day", expr.LimitTimeWeek: "week",
	}[e.Unit]
	if unit == "" {
		unit = fmt.Sprintf("%ds", e.Unit)
	}
	what := "packets"
	if e.Type == expr.LimitTypePktBytes {
		what = "bytes"
	}
	return fmt.Sprintf("limit rate %s%d/%s burst %d %s", over, e.Rate, unit, e.Burst, what)
}

func fwRejectText(e *expr.Reject) string {
	switch e.Type {
	case unix.NFT_REJECT_TCP_RST:
		return "reject with tcp reset"
	case unix.NFT_REJECT_ICMPX_UNREACH:
		code := map[uint8]string{
			unix.NFT_REJECT_ICMPX_NO_ROUTE:         "no-route",
			unix.NFT_REJECT_ICMPX_PORT_UNREACH:     "port-unreachable",
			unix.NFT_REJECT_ICMPX_HOST_UNREACH:     "host-unreachable",
			unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED: "admin-prohibited",
		}[e.Code]
		if code == "" {
			code = strconv.Itoa(int(e.Code))
		}
		return "reject with icmpx " + code
	case unix.NFT_REJECT_ICMP_UNREACH:
		return fmt.Sprintf("reject with icmp code %d", e.Code)
	}
	return fmt.Sprintf("reject type %d code %d", e.Type, e.Code)
}

func fwObjrefType(t int) string {
	switch t {
	case unix.NFT_OBJECT_COUNTER:
		return "counter"
	case unix.NFT_OBJECT_QUOTA:
		return "quota"
	case unix.NFT_OBJECT_CT_HELPER:
		return "ct helper"
	case unix.NFT_OBJECT_LIMIT:
		return "limit"
	}
	return fmt.Sprintf("object type %d", t)
}

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
