package checks

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
