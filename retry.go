package getorcreate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds the retries of transactions that failed with a
// retryable error. Delays grow exponentially from BaseDelay to MaxDelay with
// full jitter, and a cancelled context stops them at once.
type RetryPolicy struct {
	MaxRetries int           // retries after the first attempt; 0 or negative means none (the zero RetryPolicy means DefaultRetry)
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

// Retry runs fn, and runs it again after each error for which IsRetryable
// is true, up to the policy's MaxRetries times, waiting as Wait says
// between tries. It returns nil or the last error. The zero policy means
// DefaultRetry. It is the one retry loop of the library: the Table's own
// calls, RunTx and pgxv5.RunTx all go through it.
func (p RetryPolicy) Retry(ctx context.Context, fn func() error) error {
	_, err := p.orDefault().run(ctx, fn, IsRetryable, nil)
	return err
}

// run is Retry for a policy already defaulted, with the errors to retry
// decided by retryable, reporting the attempts made and calling onRetry
// with the error before each retry.
func (p RetryPolicy) run(ctx context.Context, fn func() error, retryable func(error) bool, onRetry func(error)) (int, error) {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return attempt, nil
		}
		if attempt > p.MaxRetries || ctx.Err() != nil || !retryable(err) {
			return attempt, err
		}
		if onRetry != nil {
			onRetry(err)
		}
		if werr := p.Wait(ctx, attempt); werr != nil {
			return attempt, fmt.Errorf("%w (retrying after: %w)", werr, err)
		}
	}
}

// RunTx runs fn in a transaction on db and commits it. When fn or the
// commit fails with an error for which IsRetryable is true (whether it came
// from this library or straight from the driver), the transaction is rolled
// back and fn runs again from the start, up to DefaultRetry.MaxRetries times.
// A connection lost while fn runs is retried too (the transaction did not
// commit); one lost during the COMMIT is returned as ErrIndeterminate. Any
// other error rolls back and is returned. fn must not commit or roll back
// tx, and must be safe to run more than once.
func RunTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	return RunTxPolicy(ctx, db, opts, DefaultRetry, fn)
}

// RunTxPolicy is RunTx with a retry policy.
func RunTxPolicy(ctx context.Context, db *sql.DB, opts *sql.TxOptions, policy RetryPolicy, fn func(tx *sql.Tx) error) error {
	return policy.Retry(ctx, func() error { return runTxOnce(ctx, db, opts, fn) })
}

func runTxOnce(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		// A refused connection (a dead Galera node, a primary being
		// failed over) surfaces here: as ErrConnection, not the raw dial
		// error.
		return Uncommitted(err)
	}
	err = fn(tx)
	if err == nil {
		err = ctx.Err() // a COMMIT not sent is a definite failure
	}
	if err != nil {
		_ = tx.Rollback()
		return Uncommitted(err)
	}
	if err := tx.Commit(); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// The context ended while the COMMIT was on its way.
			return &Error{Op: "commit", Kind: ErrIndeterminate, Input: -1, Err: fmt.Errorf("%w: %w", cerr, err)}
		}
		return Committed(err)
	}
	return nil
}

// Committed says that err came from a COMMIT: a lost connection then is
// indeterminate (ErrIndeterminate), whatever the driver reports, since the
// COMMIT may have reached the server. RunTx applies it to the commit's
// error; use it with Uncommitted in a transaction loop of your own.
func Committed(err error) error {
	if k := Kind(err); k != ErrConnection && k != ErrIndeterminate {
		return err
	}
	var e *Error
	if errors.As(err, &e) && e.Kind == ErrIndeterminate {
		return err
	}
	return &Error{Op: "commit", Kind: ErrIndeterminate, Input: -1, Err: err}
}

// Uncommitted says that err ended a transaction before its COMMIT was
// sent: a connection lost then is a definite failure (ErrConnection,
// retryable), since the server rolls back a transaction whose connection
// it lost, not an indeterminate one; a driver's own error for it comes
// back wrapped in an *Error of that kind. Other errors are returned as
// they are. RunTx applies it to fn's error; use it in a transaction loop of
// your own.
func Uncommitted(err error) error {
	var e *Error
	switch Kind(err) {
	case ErrIndeterminate:
		if errors.As(err, &e) {
			return uncommitted(err)
		}
	case ErrConnection:
		if errors.As(err, &e) {
			return err
		}
	default:
		return err
	}
	return &Error{Op: "transaction", Kind: ErrConnection, Input: -1, Err: err}
}
