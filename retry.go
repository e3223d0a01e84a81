package getorcreate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/getorcreate/getorcreate/dialect"
)

// RetryPolicy bounds the retries of transactions that failed with a
// retryable error. Delays grow exponentially from BaseDelay to MaxDelay with
// full jitter, and a cancelled context stops them at once.
type RetryPolicy struct {
	MaxRetries int           // retries after the first attempt; negative means none
	BaseDelay  time.Duration // the first delay's upper bound
	MaxDelay   time.Duration // no delay exceeds this
}

// DefaultRetry is the policy used when a Config leaves Retry zero.
var DefaultRetry = RetryPolicy{MaxRetries: 20, BaseDelay: 2 * time.Millisecond, MaxDelay: 500 * time.Millisecond}

func (p RetryPolicy) orDefault() RetryPolicy {
	if p == (RetryPolicy{}) {
		return DefaultRetry
	}
	if p.MaxRetries < 0 {
		p.MaxRetries = 0
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultRetry.BaseDelay
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = max(p.BaseDelay, DefaultRetry.MaxDelay)
	}
	return p
}

// Wait sleeps before retry number attempt (counting from 1): a random
// duration up to BaseDelay doubled attempt-1 times, capped at MaxDelay. It
// returns early with the context's error when ctx is done.
func (p RetryPolicy) Wait(ctx context.Context, attempt int) error {
	d := p.BaseDelay << min(attempt-1, 16)
	if d > p.MaxDelay || d <= 0 {
		d = p.MaxDelay
	}
	d = time.Duration(rand.Int64N(int64(d)) + 1)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// RunTx runs fn in a transaction on db and commits it. When fn or the
// commit fails with an error for which IsRetryable is true (whether it came
// from this library or straight from the driver), the transaction is rolled
// back and fn runs again from the start, up to DefaultRetry.MaxRetries times.
// Any other error rolls back and is returned. fn must not commit or roll
// back tx, and must be safe to run more than once.
func RunTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	return RunTxPolicy(ctx, db, opts, DefaultRetry, fn)
}

// RunTxPolicy is RunTx with a retry policy.
func RunTxPolicy(ctx context.Context, db *sql.DB, opts *sql.TxOptions, policy RetryPolicy, fn func(tx *sql.Tx) error) error {
	policy = policy.orDefault()
	d, _ := dialect.ForDriver(db.Driver())
	for attempt := 1; ; attempt++ {
		err := runTxOnce(ctx, db, opts, fn)
		if err == nil {
			return nil
		}
		retryable := IsRetryable(err)
		if !retryable && d != nil {
			var e *Error
			retryable = !errors.As(err, &e) && d.Classify(err).Retryable()
		}
		if !retryable || attempt > policy.MaxRetries || ctx.Err() != nil {
			return err
		}
		if serr := policy.Wait(ctx, attempt); serr != nil {
			return fmt.Errorf("%w (after: %w)", serr, err)
		}
	}
}

func runTxOnce(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
