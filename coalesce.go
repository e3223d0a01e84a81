package getorcreate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/getorcreate/getorcreate/dialect"
)

// Coalescing (Config.Coalesce).
//
// Calls of one shape (GetOrCreate, or UpdateOrCreate with one update
// signature) share a lane. A call that finds its lane idle goes out at
// once, alone, as the plain single call: no timer, no added latency. A
// call that finds a statement of its lane in flight queues; when the
// flight lands, the goroutine that ran it takes the queue (in arrival
// order, up to the bulk size limit) as the next batch and starts it on a
// goroutine of its own, which ends with the batch. A batch of one is sent
// by its caller as the plain single call.
//
// A batch is one bulk call (execBulk): its distinct keys in key order, in
// one transaction of the library's own, retried whole. Within a batch, a
// key appears once: GetOrCreate callers of one key share its row (the
// first in arrival order gets Created), increments of one key (Add of
// integers, with or without Sets) merge into one, and any other update of a key
// already in the batch waits for the next batch, so a batch means what
// its calls run one after the other would.

// laneKey is the shape of calls that can go in one batch.
type laneKey struct {
	op  uint8
	sig string
}

// lane queues the calls of one shape while its batches are in flight.
type lane[T any] struct {
	mu     sync.Mutex
	queue  []*waiter[T]
	flying int
	// blind counts the flights whose keys are not known (a call sent as
	// soon as it came, unchecked), keys the keys of the others: a second
	// flight takes only keys that no flight holds, so two batches of one
	// process never wait for each other's row locks.
	blind int
	keys  map[string]int
}

// flight is one batch's (or one call's) hold on its lane.
type flight struct {
	keys  []string
	blind bool
}

// hold records a flight; under l.mu.
func (l *lane[T]) hold(f *flight) {
	l.flying++
	if f.blind {
		l.blind++
		return
	}
	if l.keys == nil {
		l.keys = map[string]int{}
	}
	for _, k := range f.keys {
		l.keys[k]++
	}
}

// release ends a flight; under l.mu.
func (l *lane[T]) release(f *flight) {
	l.flying--
	if f.blind {
		l.blind--
		return
	}
	for _, k := range f.keys {
		if l.keys[k]--; l.keys[k] == 0 {
			delete(l.keys, k)
		}
	}
}

// open reports whether a call on key may fly now, beside the flights up;
// under l.mu.
func (l *lane[T]) open(key string, most int) bool {
	return len(l.queue) == 0 && l.flying < most && l.blind == 0 && l.keys[key] == 0
}

// The states of a waiter, under its lane's mutex.
const (
	queued  = iota
	alone   // taken as a batch of one: it runs the single call itself
	inBatch // taken into a batch that another goroutine sends
)

// waiter is one coalesced call: its input, as bound and checked before it
// joined, and the channel its batch reports on.
type waiter[T any] struct {
	ctx    context.Context
	tc     *traced
	op     string
	row    T         // the input
	res    Result[T] // the row is scanned here
	c      *dialect.Call
	sk     shapeKey
	key    string
	ups    []Update
	args   []any
	argKey string
	// deltas are, for UpdateOrCreate whose updates are all Add of Go
	// integers to integer fields or Set of values its fields can hold, each
	// update's delta (0 for a Set), pos their fields and set which are
	// Sets; deltas is nil otherwise. gives is set when the insert gives
	// every updated column (no DEFAULT fills one), so merged updates can be
	// folded into it.
	deltas []int64
	pos    []int
	set    []bool
	gives  bool
	state  int
	done   chan verdict // buffered: a batch never waits for a caller
}

// verdict is what a batch tells one of its callers.
type verdict struct {
	solo       bool    // send the call alone (a batch of one, or after a batch that definitely failed)
	flight     *flight // with solo: the call is this flight of its lane, and must land it
	created    bool
	o          outcome
	err        error
	batch      int     // the calls in the batch
	statements int     // the statements the batch sent, told to its first caller only
	retries    []error // the batch's retries, told to its first caller only
}

// lane returns the table's lane for a shape.
func (t *Table[T]) lane(k laneKey) *lane[T] {
	if l, ok := t.lanes.Load(k); ok {
		return l.(*lane[T])
	}
	l, _ := t.lanes.LoadOrStore(k, &lane[T]{})
	return l.(*lane[T])
}

// coalesced runs GetOrCreate (no ups) or UpdateOrCreate on a coalescing
// table.
func (t *Table[T]) coalesced(ctx context.Context, row T, ups []Update) (Result[T], error) {
	op, kind := "GetOrCreate", opGet
	if len(ups) > 0 {
		op, kind = "UpdateOrCreate", opUpdate
	}
	ctx, tc := t.startTrace(ctx, op, false, 1)
	lk := laneKey{op: kind}
	if kind == opUpdate {
		lk.sig = signature(ups)
	}
	l := t.lane(lk)
	l.mu.Lock()
	if len(l.queue) == 0 && l.flying == 0 {
		// Nothing in flight: sent at once, as the plain single call.
		f := &flight{blind: true}
		l.hold(f)
		l.mu.Unlock()
		return t.alone(ctx, tc, l, row, ups, f)
	}
	l.mu.Unlock()
	// Checked before it joins, as a single call checks: a bad input fails
	// here and never reaches a batch.
	w := &waiter[T]{ctx: ctx, tc: tc, op: op, row: row, ups: ups, done: make(chan verdict, 1)}
	w.res.Row = row
	c, sk, err := t.call(op, &w.res, false)
	if err != nil {
		tc.end(ctx, PathFailed, 0, 0, err)
		return w.res, err
	}
	if _, err := t.plan(kind, sk, ups); err != nil {
		tc.end(ctx, PathFailed, 0, 0, err)
		return w.res, err
	}
	if kind == opGet && t.findOnReplica(ctx, tc, c, sk) {
		w.res.Attempts, w.res.FromReplica = 1, true
		tc.end(ctx, PathReplica, 0, 1, nil)
		t.learn(true)
		return w.res, nil
	}
	w.c, w.sk, w.key = c, sk, t.keyString(c.Values)
	if kind == opUpdate {
		w.args = bindArgs(ups, nil)
		w.argKey = argsKey(w.args)
		t.increments(w)
	}
	l.mu.Lock()
	if l.open(w.key, t.maxFlight) {
		// The flight landed while the call was being checked, or its key
		// is not in the one up.
		f := &flight{keys: []string{w.key}}
		l.hold(f)
		l.mu.Unlock()
		return t.alone(ctx, tc, l, row, ups, f)
	}
	l.queue = append(l.queue, w)
	l.mu.Unlock()
	select {
	case v := <-w.done:
		return t.finish(w, l, v)
	case <-ctx.Done():
	}
	l.mu.Lock()
	if w.state == queued {
		// Not taken into a batch: nothing was sent for it.
		l.queue = slices.DeleteFunc(l.queue, func(x *waiter[T]) bool { return x == w })
		l.mu.Unlock()
		err := t.wrap(op, ctx.Err())
		tc.end(ctx, PathFailed, 0, 0, err)
		return Result[T]{Row: row}, err
	}
	l.mu.Unlock()
	select {
	case v := <-w.done:
		// Its verdict came with the cancellation, or it was taken to go
		// alone (the single call then sends nothing on a done context).
		return t.finish(w, l, v)
	default:
	}
	err = &Error{Op: op, Table: t.name, Kind: ErrIndeterminate, Input: -1,
		Err: fmt.Errorf("%w: the call left its coalesced batch after it was sent; the outcome is not known to it", ctx.Err())}
	tc.end(ctx, PathFailed, 0, 0, err)
	return Result[T]{Row: row}, err
}

// alone sends one call as the plain single call; f, when set, is the
// lane's flight it is, landed when it returns.
func (t *Table[T]) alone(ctx context.Context, tc *traced, l *lane[T], row T, ups []Update, f *flight) (Result[T], error) {
	if f != nil {
		defer t.land(l, f)
	}
	if tc != nil {
		tc.data.Batch = 1
	}
	if len(ups) == 0 {
		return t.getOrCreateTraced(ctx, tc, t.own, false, row, nil)
	}
	return t.updateOrCreateTraced(ctx, tc, t.own, false, row, ups)
}

// finish returns a queued call's outcome.
func (t *Table[T]) finish(w *waiter[T], l *lane[T], v verdict) (Result[T], error) {
	if w.tc != nil {
		w.tc.data.Statements += v.statements
		w.tc.data.Retries = append(w.tc.data.Retries, v.retries...)
	}
	if v.solo {
		return t.alone(w.ctx, w.tc, l, w.row, w.ups, v.flight)
	}
	if w.tc != nil {
		w.tc.data.Batch = v.batch
	}
	if v.err != nil {
		w.tc.end(w.ctx, PathFailed, 0, v.o.attempts, v.err)
		return Result[T]{Row: w.row, Attempts: v.o.attempts}, v.err
	}
	res := w.res
	res.Created, res.Attempts, res.MaybeCreated = v.created, v.o.attempts, v.o.inDoubt && !v.created
	path := PathExisting
	switch {
	case v.created:
		path = PathCreated
	case len(w.ups) > 0:
		path = PathUpdated
	}
	w.tc.end(w.ctx, path, b2i(v.created), v.o.attempts, nil)
	t.learn(!v.created)
	return res, nil
}

// land ends one flight of the lane and starts the next batch, if calls
// queued meanwhile.
func (t *Table[T]) land(l *lane[T], done *flight) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.release(done)
	for l.flying < t.maxFlight && len(l.queue) > 0 && l.blind == 0 {
		batch := t.take(l)
		if len(batch) == 0 {
			break // every queued key is in the flight up
		}
		f := &flight{}
		seen := make(map[string]bool, len(batch))
		for _, w := range batch {
			if !seen[w.key] {
				seen[w.key] = true
				f.keys = append(f.keys, w.key)
			}
		}
		l.hold(f)
		if len(batch) == 1 {
			w := batch[0]
			w.state = alone
			w.done <- verdict{solo: true, flight: f}
			continue
		}
		for _, w := range batch {
			w.state = inBatch
		}
		t.flights.Add(1)
		go func() {
			defer t.flights.Done()
			t.fly(batch)
			t.land(l, f)
		}()
	}
}

// take removes the next batch from the queue: the calls in arrival order,
// up to the bulk size limit, leaving queued a call whose key is in a
// flight up, or in the batch already unless it can share (GetOrCreate) or
// merge (increments) with it.
func (t *Table[T]) take(l *lane[T]) []*waiter[T] {
	limit := t.bulkLimit(len(l.queue[0].args), t.feat.BulkRowArgs && rowArgs(l.queue[0].ups))
	type group struct {
		first *waiter[T]
		sums  []int64 // the merged deltas, or nil when the key cannot merge
	}
	groups := map[string]*group{}
	var batch, rest []*waiter[T]
	for i, w := range l.queue {
		if len(batch) == limit {
			rest = append(rest, l.queue[i:]...)
			break
		}
		if l.keys[w.key] > 0 {
			rest = append(rest, w) // after the flight that holds its key
			continue
		}
		g := groups[w.key]
		if g == nil {
			g = &group{first: w}
			if w.deltas != nil && w.gives {
				g.sums = slices.Clone(w.deltas)
			}
			groups[w.key] = g
			batch = append(batch, w)
			continue
		}
		if len(w.ups) == 0 {
			batch = append(batch, w) // shares the first's row
			continue
		}
		if g.sums != nil && w.deltas != nil {
			sums, ok := addAll(g.sums, w.deltas)
			if ok {
				g.sums = sums
				batch = append(batch, w)
				continue
			}
		}
		rest = append(rest, w) // the next batch applies it after this one
	}
	l.queue = rest
	return batch
}

// fly sends a batch of two calls or more and tells each its outcome.
func (t *Table[T]) fly(batch []*waiter[T]) {
	ctx, cancel := batchContext(batch)
	defer cancel()
	lead := batch[0]
	update := len(lead.ups) > 0
	bc := &bulkCall{op: lead.op, update: update, first: map[string]int{}, failed: -1}
	if update {
		bc.ups, bc.updateArgs, bc.perRow = lead.ups, lead.args, t.feat.BulkRowArgs && rowArgs(lead.ups)
	}
	// One input per key: the first caller's, with the increments of the
	// callers after it folded in.
	var members [][]*waiter[T] // per input, its callers in arrival order
	for _, w := range batch {
		if i, ok := bc.first[w.key]; ok {
			members[i] = append(members[i], w)
			continue
		}
		bc.first[w.key] = len(bc.calls)
		bc.calls = append(bc.calls, w.c)
		bc.keys = append(bc.keys, w.key)
		bc.omits = append(bc.omits, w.sk.omit)
		members = append(members, []*waiter[T]{w})
	}
	if update {
		bc.rowArgs = make([][]any, len(bc.calls))
		bc.argKeys = make([]string, len(bc.calls))
	}
	for i, ws := range members {
		if update {
			bc.rowArgs[i], bc.argKeys[i] = ws[0].args, ws[0].argKey
		}
		if len(ws) > 1 && update {
			c := *ws[0].c
			c.Values = slices.Clone(c.Values)
			sums := slices.Clone(ws[0].deltas)
			for _, w := range ws[1:] {
				sums, _ = addAll(sums, w.deltas) // take checked the sums
			}
			last := ws[len(ws)-1]
			args := make([]any, len(sums))
			for j, pos := range ws[0].pos {
				// The row to create is as if the first caller created it
				// and the others then applied theirs: every increment but
				// the first's, the last caller's Set values.
				if ws[0].set[j] {
					c.Values[pos], args[j] = last.args[j], last.args[j]
					continue
				}
				c.Values[pos] = reflect.ValueOf(c.Values[pos]).Int() + sums[j] - ws[0].deltas[j]
				args[j] = sums[j]
			}
			bc.calls[i], bc.rowArgs[i], bc.argKeys[i] = &c, args, argsKey(args)
		}
		bc.order = append(bc.order, i)
	}
	slices.SortFunc(bc.order, func(a, b int) int { return cmp.Compare(bc.keys[a], bc.keys[b]) })
	bc.autocommit = update && t.feat.AtomicBulkUpsert && t.dt.Where == "" && t.oneChunk(bc)
	var statements int
	var btc *traced
	if t.tracer != nil {
		btc = &traced{count: &statements}
	}
	created := make([]bool, len(bc.calls))
	o, err := t.execBulk(ctx, btc, nil, bc, func(i int, c bool) { created[i] = c })
	var retries []error
	if btc != nil {
		retries = btc.data.Retries
	}
	tell := func(w *waiter[T], v verdict) {
		v.batch = len(batch)
		if w == lead {
			v.statements, v.retries = statements, retries
		}
		w.done <- v
	}
	if err != nil {
		if errors.Is(err, ErrIndeterminate) {
			// The batch may have been applied: no caller may send its call
			// again, and none knows its outcome.
			for _, w := range batch {
				e := &Error{Op: w.op, Table: t.name, Kind: ErrIndeterminate, Input: -1, Err: err}
				tell(w, verdict{err: e, o: o})
			}
			return
		}
		// The batch's transaction did not commit: each call goes alone,
		// and a bad input fails only its own.
		for _, w := range batch {
			tell(w, verdict{solo: true})
		}
		return
	}
	for i, ws := range members {
		lead, stored := ws[0], ws[0].res.Row
		for k, w := range ws {
			w.res.Row = stored
			if lead.deltas == nil || len(ws) == 1 {
				continue
			}
			// Each caller sees the row its own updates made, in arrival
			// order: the merged count less the increments of the callers
			// after it, and its own Set values (the last caller's are the
			// stored ones; the first's, if it created the row, its own
			// row's).
			for j, pos := range lead.pos {
				f := t.m.FieldOf(reflect.ValueOf(&w.res.Row), pos)
				switch {
				case !lead.set[j]:
					var later int64
					for _, x := range ws[k+1:] {
						later += x.deltas[j]
					}
					f.SetInt(f.Int() - later)
				case k == len(ws)-1:
				case k == 0 && created[i]:
					f.Set(t.m.FieldOf(reflect.ValueOf(&w.row), pos))
				default:
					setField(f, w.args[j])
				}
			}
		}
	}
	for i, ws := range members {
		for k, w := range ws {
			tell(w, verdict{created: created[i] && k == 0, o: o})
		}
	}
}

// oneChunk reports whether execBulk sends bc as one chunk: every input of
// one statement shape, their arguments bound per row or all equal, within
// the size limit.
func (t *Table[T]) oneChunk(bc *bulkCall) bool {
	if len(bc.order) > t.bulkLimit(len(bc.updateArgs), bc.perRow) {
		return false
	}
	for _, i := range bc.order {
		if bc.omits[i] != bc.omits[bc.order[0]] || !bc.sameArgs(i, bc.order[0]) {
			return false
		}
	}
	return true
}

// batchContext is what a batch runs in once sent: not cancelled with any
// one caller (the others still wait for it), carrying the first caller's
// values (its trace), and ending at the latest of the callers' deadlines
// when every caller has one: past it, no caller is left to want the
// outcome.
func batchContext[T any](batch []*waiter[T]) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(batch[0].ctx)
	var last time.Time
	for _, w := range batch {
		d, ok := w.ctx.Deadline()
		if !ok {
			return ctx, func() {}
		}
		if d.After(last) {
			last = d
		}
	}
	return context.WithDeadline(ctx, last)
}

// increments fills w.deltas when its updates are all Add of integer
// deltas to signed integer fields, or Set of values its fields can hold:
// then calls on one key merge into one write, of the sums and of the last
// caller's values.
func (t *Table[T]) increments(w *waiter[T]) {
	n := len(w.ups)
	deltas, pos, set := make([]int64, 0, n), make([]int, 0, n), make([]bool, 0, n)
	gives := true
	for j, u := range w.ups {
		p := t.m.Lookup(u.col)
		if p < 0 {
			return
		}
		ft := t.m.Fields[p].Type
		var d int64
		switch u.op {
		case dialect.OpAdd:
			var ok bool
			if d, ok = integer(u.args[0]); !ok {
				return
			}
			switch ft.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			default:
				return
			}
		case dialect.OpArg:
			if !showable(w.args[j], ft) {
				return
			}
		default:
			return
		}
		if k := slices.Index(t.defaultable, p); k >= 0 && w.sk.omit&(1<<k) != 0 {
			gives = false // the DEFAULT is not known here: cannot fold updates into it
		}
		deltas, pos, set = append(deltas, d), append(pos, p), append(set, u.op == dialect.OpArg)
	}
	w.deltas, w.pos, w.set, w.gives = deltas, pos, set, gives
}

// showable reports whether a field of type ft can show the value v.
func showable(v any, ft reflect.Type) bool {
	if v == nil {
		switch ft.Kind() {
		case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
			return true
		}
		return false
	}
	return reflect.TypeOf(v).AssignableTo(ft)
}

// setField sets f to v, which showable checked.
func setField(f reflect.Value, v any) {
	if v == nil {
		f.SetZero()
		return
	}
	f.Set(reflect.ValueOf(v))
}

// integer returns v as an int64 when it is a Go integer that fits.
func integer(v any) (int64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if u := rv.Uint(); u <= math.MaxInt64 {
			return int64(u), true
		}
	}
	return 0, false
}

// addAll adds b to a element-wise into a new slice, and reports false on
// an overflow.
func addAll(a, b []int64) ([]int64, bool) {
	out := make([]int64, len(a))
	for i := range a {
		s := a[i] + b[i]
		if (b[i] > 0 && s < a[i]) || (b[i] < 0 && s > a[i]) {
			return nil, false
		}
		out[i] = s
	}
	return out, true
}

// rowArgs reports whether a bulk statement can bind each row's own
// arguments for these updates (Shape.RowArgs): every bound value is that of
// a Set, Add, Greatest or Least, typed as its column. An Expr's values have
// no type the library knows: batches of such calls go in one statement per
// run of keys with equal values.
func rowArgs(ups []Update) bool {
	for _, u := range ups {
		if u.op == dialect.OpRaw {
			for _, a := range u.args {
				if _, ok := a.(Ref); !ok {
					return false
				}
			}
		}
	}
	return true
}

// argsKey encodes bound update arguments exactly, to tell equal ones.
func argsKey(args []any) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteString(valueString(a))
	}
	return b.String()
}
