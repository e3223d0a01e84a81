package getorcreate

// Queued and Flying expose a coalescing table's lanes to the tests, which
// must know that calls queued, or that a batch is in flight, before they
// release a lock the batch waits on.

// Queued counts the calls queued in all of t's lanes.
func Queued[T any](t *Table[T]) int {
	n := 0
	t.lanes.Range(func(_, v any) bool {
		l := v.(*lane[T])
		l.mu.Lock()
		n += len(l.queue)
		l.mu.Unlock()
		return true
	})
	return n
}

// Flying counts the flights of all of t's lanes.
func Flying[T any](t *Table[T]) int {
	n := 0
	t.lanes.Range(func(_, v any) bool {
		l := v.(*lane[T])
		l.mu.Lock()
		n += l.flying
		l.mu.Unlock()
		return true
	})
	return n
}

// SetMaxFlight sets how many batches of one shape t lets fly at once, for
// the benchmarks that measure it.
func SetMaxFlight[T any](t *Table[T], n int) { t.maxFlight = n }
