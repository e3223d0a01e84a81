package tagd

import (
	"math"
	"sync"
	"time"
)

// limiter is a token bucket per client: rate tokens a second, up to burst.
// Buckets idle long enough to be full again are dropped, so memory stays
// bounded by the clients of the last few seconds.
type limiter struct {
	rate  float64
	burst float64
	mu    sync.Mutex
	b     map[string]*bucket
	swept time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	if burst < 1 {
		burst = max(1, int(math.Ceil(rate)))
	}
	return &limiter{rate: rate, burst: float64(burst), b: map[string]*bucket{}}
}

// allow takes a token for client, or says how long until one is free.
func (l *limiter) allow(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	if now.Sub(l.swept) > full+time.Second {
		for k, b := range l.b {
			if now.Sub(b.at) > full {
				delete(l.b, k)
			}
		}
		l.swept = now
	}
	b := l.b[client]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.b[client] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}
