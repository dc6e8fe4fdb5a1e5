package firewall

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/bits"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file prints the sets and maps that nftables rules look up.

// setText prints a named set as @name and an anonymous one as its
// elements: its kernel name (__set0) depends on the order rules were
// added, its contents do not.
func (rr *ruleRenderer) setText(name string, kind valueKind, vmap bool) string {
	info, ok := rr.sets(name)
	if !ok || !info.set.Anonymous {
		return "@" + name
	}
	return "{ " + strings.Join(setElements(info, kind, vmap), ", ") + " }"
}

// setElements prints the elements of a set sorted by key; the kernel
// keeps intervals as a start element and an end element one past the
// last value, which this pairs back into ranges and prefixes.
func setElements(info setInfo, kind valueKind, vmap bool) []string {
	elems := slices.Clone(info.elems)
	hostOrder := kind == kindHostUint || kind == kindHostHex || kind == kindCtState || kind == kindAddrType
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
			return s + " : " + verdictText(el.VerdictData)
		}
		if v, ok := decodeVerdict(el.Val); vmap && ok {
			return s + " : " + verdictText(v)
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
			s := formatValue(kind, el.Key, 0)
			if len(el.KeyEnd) > 0 {
				s += "-" + formatValue(kind, el.KeyEnd, 0)
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
			last = minusOne(key(elems[i+1].Key))
		} else {
			last = bytes.Repeat([]byte{0xff}, len(el.Key))
		}
		if hostOrder {
			last = key(last) // back to host order
		}
		out = append(out, withVerdict(rangeText(kind, el.Key, last), el))
	}
	return out
}

// decodeVerdict decodes the data of a verdict map element, which
// google/nftables leaves as the netlink attributes NFTA_VERDICT_CODE and
// NFTA_VERDICT_CHAIN.
func decodeVerdict(b []byte) (*expr.Verdict, bool) {
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

// rangeText prints [first, last] as one value, a prefix, or a range.
func rangeText(kind valueKind, first, last []byte) string {
	if bytes.Equal(first, last) {
		return formatValue(kind, first, 0)
	}
	if kind == kindIPv4 || kind == kindIPv6 {
		if n, ok := rangePrefix(first, last); ok {
			return formatValue(kind, first, n)
		}
	}
	return formatValue(kind, first, 0) + "-" + formatValue(kind, last, 0)
}

// rangePrefix says whether [first, last] is exactly one prefix.
func rangePrefix(first, last []byte) (int, bool) {
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

func minusOne(b []byte) []byte {
	r := slices.Clone(b)
	for i := len(r) - 1; i >= 0; i-- {
		r[i]--
		if r[i] != 0xff {
			break
		}
	}
	return r
}
