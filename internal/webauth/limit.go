package webauth

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Failed attempts allowed per remote address: a burst of 10, then one every
// 6 seconds.
const (
	limitBurst = 10
	limitEvery = 6 * time.Second
	maxTracked = 4096
)

// limiter keeps a token bucket per remote address. The map is bounded:
// buckets that are full again are forgotten when it grows too large, and
// while it is full of addresses still being limited, every new address
// shares one overflow bucket. Clearing the map instead would let whoever
// owns enough addresses reset everyone's count, their own included.
type limiter struct {
	mu       sync.Mutex
	m        map[string]*rate.Limiter
	overflow *rate.Limiter
}

func newLimiter() *limiter {
	return &limiter{m: make(map[string]*rate.Limiter), overflow: rate.NewLimiter(rate.Every(limitEvery), limitBurst)}
}

func (l *limiter) get(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[key]
	if lim == nil {
		if len(l.m) >= maxTracked {
			for k, v := range l.m {
				if v.Tokens() >= limitBurst {
					delete(l.m, k)
				}
			}
			if len(l.m) >= maxTracked {
				return l.overflow
			}
		}
		lim = rate.NewLimiter(rate.Every(limitEvery), limitBurst)
		l.m[key] = lim
	}
	return lim
}

// take spends one attempt, reporting false when none is left.
func (l *limiter) take(key string) bool { return l.get(key).Allow() }

// exhausted reports whether key has no attempt left, without spending one.
func (l *limiter) exhausted(key string) bool { return l.get(key).Tokens() < 1 }

// remoteKey is the address a request came from: the IP of RemoteAddr, an
// IPv6 address cut to its /64 since one client usually owns a whole /64.
// Behind a reverse proxy every request shares the proxy's address; the
// limit then applies to all clients together, which fails safe.
func remoteKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
