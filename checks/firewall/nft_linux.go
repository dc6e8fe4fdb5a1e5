package firewall

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// This file renders nftables rules, as google/nftables decodes them from
// netlink, into stable text close to what `nft list ruleset` prints: "tcp
// dport 22 accept", "ct state established,related accept". It knows the
// common expressions; any other is printed as its name and its fields in
// JSON, which is stable too. Handles and counter values are never printed,
// so the text changes only when the ruleset does.

// valueKind says how to print the value of a register.
type valueKind int

const (
	kindHex valueKind = iota
	kindIPv4
	kindIPv6
	kindUint // big endian, as in packet headers
	kindProto
	kindNFProto
	kindEtherType
	kindIfname
	kindHostUint // host byte order, as meta and ct keep it
	kindHostHex
	kindCtState
	kindTCPFlags
	kindAddrType
)

// operand is what a register holds: the name of what was loaded into it
// and how to print values compared with it.
type operand struct {
	name   string
	kind   valueKind
	prefix int    // bits of an address compared, when fewer than all
	mask   []byte // a bitwise mask applied to it, other than a prefix
	xor    []byte
	dep    string // "l3" or "l4" when a match on it only sets the protocol context
	raw    []byte // the value of an immediate
}

// setInfo is a set a rule looks up: anonymous sets are printed with their
// elements, named ones by name (their elements are data, often dynamic).
type setInfo struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

type ruleRenderer struct {
	family  nftables.TableFamily
	sets    func(name string) (setInfo, bool)
	regs    map[uint32]operand
	l3, l4  string
	out     []string
	pending string // a protocol match that the next field may make redundant
	pendDep string
}

// renderRule returns the text of a rule and whether it drops or rejects
// every packet that reaches it.
func renderRule(family nftables.TableFamily, r *nftables.Rule, sets func(string) (setInfo, bool)) (string, bool) {
	rr := &ruleRenderer{family: family, sets: sets, regs: map[uint32]operand{}}
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
	return strings.Join(rr.out, " "), unconditionalDrop(r.Exprs)
}

// unconditionalDrop is true for rules such as "counter drop" or "log
// reject": nothing but counting and logging before a drop or reject.
func unconditionalDrop(es []expr.Any) bool {
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

func (rr *ruleRenderer) emit(s string) {
	rr.flush()
	rr.out = append(rr.out, s)
}

func (rr *ruleRenderer) flush() {
	if rr.pending != "" {
		rr.out = append(rr.out, rr.pending)
		rr.pending, rr.pendDep = "", ""
	}
}

func (rr *ruleRenderer) reg(r uint32) operand {
	if op, ok := rr.regs[r]; ok {
		return op
	}
	return operand{name: fmt.Sprintf("reg%d", r)}
}

func (rr *ruleRenderer) expr(e expr.Any) {
	if p, ok := e.(*expr.Payload); ok && p.OperationType == expr.PayloadLoad {
		op := payloadOperand(p, rr.l3, rr.l4)
		// "meta l4proto tcp" before "tcp dport" only makes the field valid.
		if rr.pendDep != "" && impliedBy(op.name, rr.pendDep, rr.l3, rr.l4) {
			rr.pending, rr.pendDep = "", ""
		}
		rr.flush()
		rr.regs[p.DestRegister] = op
		return
	}
	rr.flush()
	switch e := e.(type) {
	case *expr.Meta:
		op := metaOperand(e.Key)
		if e.SourceRegister {
			rr.emit(op.name + " set " + formatOperandValue(rr.reg(e.Register), op.kind))
			return
		}
		rr.regs[e.Register] = op
	case *expr.Ct:
		op := ctOperand(e.Key)
		if e.SourceRegister {
			rr.emit(op.name + " set " + formatOperandValue(rr.reg(e.Register), op.kind))
			return
		}
		rr.regs[e.Register] = op
	case *expr.Payload: // a write
		rr.emit(fmt.Sprintf("%s set %s", payloadOperand(e, rr.l3, rr.l4).name, rr.reg(e.SourceRegister).name))
	case *expr.Fib:
		rr.regs[e.Register] = fibOperand(e)
	case *expr.Bitwise:
		op := rr.reg(e.SourceRegister)
		if (op.kind == kindIPv4 || op.kind == kindIPv6) && allZero(e.Xor) {
			if n, ok := prefixLen(e.Mask); ok {
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
		rr.emit(fmt.Sprintf("%s %s%s-%s", op.name, neg, formatValue(op.kind, e.FromData, 0), formatValue(op.kind, e.ToData, 0)))
	case *expr.Lookup:
		rr.lookup(e)
	case *expr.Immediate:
		rr.regs[e.Register] = operand{name: "0x" + hex.EncodeToString(e.Data), raw: e.Data}
	case *expr.Verdict:
		rr.emit(verdictText(e))
	case *expr.Counter:
		rr.emit("counter")
	case *expr.Log:
		rr.emit(logText(e))
	case *expr.Limit:
		rr.emit(limitText(e))
	case *expr.Quota:
		over := ""
		if e.Over {
			over = "over "
		}
		rr.emit(fmt.Sprintf("quota %s%d bytes", over, e.Bytes))
	case *expr.Reject:
		rr.emit(rejectText(e))
	case *expr.Notrack:
		rr.emit("notrack")
	case *expr.Objref:
		rr.emit(fmt.Sprintf("%s name %s", objrefType(e.Type), strconv.Quote(e.Name)))
	case *expr.Masq:
		rr.emit("masquerade" + natFlags(e.Random, e.FullyRandom, e.Persistent))
	case *expr.Redir:
		s := "redirect"
		if e.RegisterProtoMin != 0 {
			s += " to :" + formatOperandValue(rr.reg(e.RegisterProtoMin), kindUint)
		}
		rr.emit(s)
	case *expr.NAT:
		rr.emit(rr.natText(e))
	case *expr.Dynset:
		rr.emit(rr.dynsetText(e))
	default:
		rr.emit(genericText(e))
	}
}

func (rr *ruleRenderer) cmp(e *expr.Cmp) {
	op := rr.reg(e.Register)
	if op.mask != nil {
		rr.emit(maskedMatch(op, e))
		return
	}
	val := formatValue(op.kind, e.Data, op.prefix)
	text := op.name + " " + cmpOp(e.Op) + val
	if e.Op == expr.CmpOpEq && op.dep != "" {
		// Remember the protocol: it names the fields loaded after it.
		switch op.dep {
		case "l3":
			rr.l3 = l3Context(op.kind, e.Data)
		case "l4":
			rr.l4 = l4Context(e.Data)
		}
		rr.flush()
		rr.pending, rr.pendDep = text, op.dep
		return
	}
	rr.emit(text)
}

func cmpOp(op expr.CmpOp) string {
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

// maskedMatch prints a comparison after a bitwise mask. "ct state
// established,related" is nft's short form of (state & mask) != 0.
func maskedMatch(op operand, e *expr.Cmp) string {
	flags := op.kind == kindCtState || op.kind == kindTCPFlags
	if flags && e.Op == expr.CmpOpNeq && allZero(e.Data) && allZero(op.xor) {
		return op.name + " " + formatValue(op.kind, op.mask, 0)
	}
	s := op.name + " & " + formatValue(op.kind, op.mask, 0)
	if !allZero(op.xor) {
		s += " ^ " + formatValue(kindHex, op.xor, 0)
	}
	o := cmpOp(e.Op)
	if o == "" {
		o = "== "
	}
	return s + " " + o + formatValue(op.kind, e.Data, 0)
}

func (rr *ruleRenderer) lookup(e *expr.Lookup) {
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
		rr.regs[e.DestRegister] = operand{name: op.name + " map " + set}
	default:
		rr.emit(op.name + " " + neg + set)
	}
}

func (rr *ruleRenderer) natText(e *expr.NAT) string {
	s := "snat"
	if e.Type == expr.NATTypeDestNAT {
		s = "dnat"
	}
	addrKind := kindHex
	switch e.Family {
	case unix.NFPROTO_IPV4:
		addrKind, s = kindIPv4, s+" ip"
	case unix.NFPROTO_IPV6:
		addrKind, s = kindIPv6, s+" ip6"
	}
	to := ""
	if e.RegAddrMin != 0 {
		to = formatOperandValue(rr.reg(e.RegAddrMin), addrKind)
		if e.RegAddrMax != 0 && e.RegAddrMax != e.RegAddrMin {
			to += "-" + formatOperandValue(rr.reg(e.RegAddrMax), addrKind)
		}
	}
	if e.RegProtoMin != 0 {
		to += ":" + formatOperandValue(rr.reg(e.RegProtoMin), kindUint)
		if e.RegProtoMax != 0 && e.RegProtoMax != e.RegProtoMin {
			to += "-" + formatOperandValue(rr.reg(e.RegProtoMax), kindUint)
		}
	}
	if to != "" {
		s += " to " + to
	}
	return s + natFlags(e.Random, e.FullyRandom, e.Persistent)
}

func natFlags(random, fully, persistent bool) string {
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

func (rr *ruleRenderer) dynsetText(e *expr.Dynset) string {
	op := "add"
	if e.Operation == unix.NFT_DYNSET_OP_UPDATE {
		op = "update"
	}
	inner := &ruleRenderer{family: rr.family, sets: rr.sets, regs: rr.regs, l3: rr.l3, l4: rr.l4}
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

// genericText prints an expression this file has no words for: its
// type and its fields in JSON, which are configuration (the expressions
// with running values, counter and quota, have words above).
func genericText(e expr.Any) string {
	name := strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."))
	b, err := json.Marshal(e)
	if err != nil {
		return name
	}
	return name + " " + string(b)
}

func verdictText(v *expr.Verdict) string {
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

var logLevels = []string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit"}

func logText(e *expr.Log) string {
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
		if int(e.Level) < len(logLevels) {
			s += " level " + logLevels[e.Level]
		} else {
			s += fmt.Sprintf(" level %d", e.Level)
		}
	}
	if has(unix.NFTA_LOG_FLAGS) && e.Flags != 0 {
		s += fmt.Sprintf(" flags 0x%x", uint32(e.Flags))
	}
	return s
}

func limitText(e *expr.Limit) string {
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

func rejectText(e *expr.Reject) string {
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

func objrefType(t int) string {
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
