package tagd

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxBuckets bounds the limiter's memory whatever the clients do. Past it,
// clients without a bucket share one: new addresses are limited together
// rather than let in unlimited or allowed to reset anyone's bucket.
const maxBuckets = 100_000

// limiter keeps a token bucket (a rate.Limiter) per client key. A bucket
// idle for longer than it takes to refill is dropped, since a new one would
// be the same, so memory follows the clients of the last few seconds.
type limiter struct {
	limit rate.Limit
	burst int
	idle  time.Duration // time to refill an empty bucket
	mu    sync.Mutex
	b     map[string]*bucket
	swept time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newLimiter(perSecond float64, burst int) *limiter {
	if burst < 1 {
		burst = max(1, int(perSecond+0.999999))
	}
	return &limiter{
		limit: rate.Limit(perSecond),
		burst: burst,
		idle:  time.Duration(float64(burst) / perSecond * float64(time.Second)),
		b:     map[string]*bucket{},
	}
}

// allow takes a token for client, or says how long until one is free.
func (l *limiter) allow(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > l.idle+time.Second || len(l.b) >= maxBuckets {
		l.sweep(now)
	}
	b := l.b[client]
	if b == nil {
		if len(l.b) >= maxBuckets {
			client = "overflow"
			b = l.b[client]
		}
		if b == nil {
			b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
			l.b[client] = b
		}
	}
	b.used = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // refused: the token is not spent
		return false, d
	}
	return true, 0
}

func (l *limiter) sweep(now time.Time) {
	for k, b := range l.b {
		if now.Sub(b.used) > l.idle {
			delete(l.b, k)
		}
	}
	l.swept = now
}

// clientKey is the rate limit's key for a remote address: an IPv4 address
// whole, an IPv6 address cut to its first v6Prefix bits, since one host or
// site is commonly given a whole /64 and can rotate through it. Forwarded
// headers are not trusted: behind a proxy, every client shares the proxy's
// bucket.
func clientKey(remoteAddr string, v6Prefix int) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap().WithZone("")
	if a.Is4() || v6Prefix >= 128 {
		return a.String()
	}
	p, err := a.Prefix(v6Prefix)
	if err != nil {
		return a.String()
	}
	return p.String()
}
