package bench

import (
	"context"
	"database/sql"
	"errors"
)

// django is a Go port of Django's QuerySet.get_or_create and
// update_or_create (django/db/models/query.py, Django 5.x), statement for
// statement, for the row type of this benchmark:
//
//	def get_or_create(self, defaults=None, **kwargs):
//	    try:
//	        return self.get(**kwargs), False
//	    except self.model.DoesNotExist:
//	        params = self._extract_model_params(defaults, **kwargs)
//	        try:
//	            with transaction.atomic(using=self.db):
//	                return self.create(**params), True
//	        except IntegrityError:
//	            try:
//	                return self.get(**kwargs), False
//	            except self.model.DoesNotExist:
//	                pass
//	            raise
//
//	def update_or_create(self, defaults=None, create_defaults=None, **kwargs):
//	    with transaction.atomic(using=self.db):
//	        obj, created = self.select_for_update().get_or_create(create_defaults, **kwargs)
//	        if created:
//	            return obj, created
//	        for k, v in resolve_callables(update_defaults):
//	            setattr(obj, k, v)
//	        obj.save(using=self.db, update_fields=update_fields)
//	    return obj, False
//
// The update is update_or_create(name=k, defaults={"count": F("count") + 1},
// create_defaults={"count": 1}). get() is "SELECT ... LIMIT 21"; create()
// is an INSERT ... RETURNING id. transaction.atomic() is BEGIN/COMMIT at
// the outermost level and a SAVEPOINT when nested. select_for_update() adds
// FOR UPDATE, which Django leaves out on SQLite. Django sets READ COMMITTED
// on its MySQL/MariaDB connections when it opens them, so on MariaDB the
// port runs on a pool of its own whose sessions start at READ COMMITTED
// (Env.ReadCommitted), not paying a SET TRANSACTION per transaction.
// Django never retries a deadlock or serialization failure: those reach the
// caller.
type django struct {
	db                      *sql.DB
	kind                    string
	get, getForUpdate       string
	insert, insert1, update string
}

func openDjango(ctx context.Context, e *Env, table string) (Ops, error) {
	d := &django{db: e.DB, kind: e.Kind}
	if e.ReadCommitted != nil {
		d.db = e.ReadCommitted
	}
	d.get = rebind(e.DB, "SELECT id, name, count FROM "+table+" WHERE name = ? LIMIT 21")
	d.getForUpdate = d.get
	if e.Kind != "sqlite" {
		d.getForUpdate += " FOR UPDATE"
	}
	d.insert = rebind(e.DB, "INSERT INTO "+table+" (name, count) VALUES (?, 0) RETURNING id")
	d.insert1 = rebind(e.DB, "INSERT INTO "+table+" (name, count) VALUES (?, 1) RETURNING id")
	d.update = rebind(e.DB, "UPDATE "+table+" SET count = (count + 1) WHERE id = ?")
	return Ops{Existing: d.getOrCreate, New: d.getOrCreate, Update: d.updateOrCreate}, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// fetch is Django's get(): it fails with sql.ErrNoRows for DoesNotExist.
func (d *django) fetch(ctx context.Context, q queryer, query, key string) (Row, error) {
	var r Row
	err := q.QueryRowContext(ctx, query, key).Scan(&r.ID, &r.Name, &r.Count)
	return r, err
}

func (d *django) getOrCreate(ctx context.Context, key string) (Outcome, error) {
	_, err := d.fetch(ctx, d.db, d.get, key)
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return Outcome{Known: true}, err
	}
	// with transaction.atomic(): self.create(**params)
	cerr := func() error {
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRowContext(ctx, d.insert, key).Scan(&id); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}()
	if cerr == nil {
		return Outcome{Created: true, Known: true}, nil
	}
	if !isIntegrity(cerr) {
		return Outcome{Known: true}, cerr
	}
	if _, err := d.fetch(ctx, d.db, d.get, key); err == nil {
		return Outcome{Known: true}, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return Outcome{Known: true}, err
	}
	return Outcome{Known: true}, cerr // raise
}

func (d *django) updateOrCreate(ctx context.Context, key string) (out Outcome, err error) {
	out.Known = true
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return out, err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
			return
		}
		err = tx.Commit()
	}()
	// self.select_for_update().get_or_create(create_defaults, name=key)
	r, err := d.fetch(ctx, tx, d.getForUpdate, key)
	if errors.Is(err, sql.ErrNoRows) {
		// Nested atomic(): a savepoint around create().
		if _, err = tx.ExecContext(ctx, "SAVEPOINT s1"); err != nil {
			return out, err
		}
		var id int64
		cerr := tx.QueryRowContext(ctx, d.insert1, key).Scan(&id)
		if cerr == nil {
			_, err = tx.ExecContext(ctx, "RELEASE SAVEPOINT s1")
			out.Created = true
			return out, err
		}
		if _, err = tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT s1"); err != nil {
			return out, err
		}
		if _, err = tx.ExecContext(ctx, "RELEASE SAVEPOINT s1"); err != nil {
			return out, err
		}
		if !isIntegrity(cerr) {
			return out, cerr
		}
		r, err = d.fetch(ctx, tx, d.getForUpdate, key)
		if errors.Is(err, sql.ErrNoRows) {
			return out, cerr // raise
		}
	}
	if err != nil {
		return out, err
	}
	// obj.count = F("count") + 1; obj.save(update_fields={"count"})
	_, err = tx.ExecContext(ctx, d.update, r.ID)
	return out, err
}
