// Package faultproxy is a TCP proxy for tests. It sits between a database
// client and a real PostgreSQL or MySQL/MariaDB server and cuts
// connections at chosen moments, so that a test can produce real faults:
// a statement that never reached the server, a statement that reached the
// server and ran but whose answer never came back, and a COMMIT lost in
// either of these two ways.
//
//	p, err := faultproxy.Start("127.0.0.1:5432")
//	defer p.Close()
//	// point the client at p.Addr(), then:
//	p.Cut(faultproxy.Rule{Match: []byte("COMMIT"), When: faultproxy.AfterSend})
//
// # Matching
//
// The proxy tells the two protocols apart by who speaks first (the MySQL
// server greets, the PostgreSQL client starts) and reads what the client
// sends message by message, so a message split across TCP reads, or several
// messages in one read, are handled alike. Rules are matched, ignoring ASCII
// and Unicode case, against the SQL text of the statement messages:
//
//   - PostgreSQL: Query (simple protocol; pgx sends BEGIN, COMMIT and
//     statements without arguments this way), Parse, and Bind. A Bind carries
//     no SQL, so the proxy remembers the text of every statement the
//     connection has parsed, by name, and matches a Bind against the text of
//     the statement it binds: a statement pgx prepared and cached before the
//     rule was set still matches.
//   - MySQL: COM_QUERY, COM_STMT_PREPARE, and COM_STMT_EXECUTE, matched
//     against the text of the prepared statement, whose id the proxy takes
//     from the server's answer to the prepare.
//
// Start-up, authentication, Sync, Close, MySQL's COM_PING and the other
// messages never match (pgx pings with a Query, "-- ping", which does), and
// a connection cut by a rule is cut once. Limitations: TLS and
// MySQL compression are not read (the connection is forwarded untouched and
// no rule matches it: use sslmode=disable, and no tls or compress parameter);
// a statement run through SQL-level PREPARE/EXECUTE matches by the text of
// the EXECUTE only; and AfterSend assumes the client does not pipeline
// (database/sql, pgx outside batches and go-sql-driver/mysql do not): with
// answers to earlier statements still outstanding, the cut could come during
// one of those.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// When says at which moment a Rule cuts the connection.
type When int

const (
	// BeforeSend cuts the connection when the matching message arrives from
	// the client, without forwarding it or anything after it: the server
	// never sees the statement.
	BeforeSend When = iota + 1
	// AfterSend forwards the matching statement (for a PostgreSQL Bind, up
	// to its Sync), drops whatever the client sends after it, and cuts the
	// connection when the first bytes of the server's answer arrive, without
	// passing them on: the server has received and executed the statement
	// (and, in autocommit, committed it), and the client never learns the
	// outcome. Only messages that execute a statement can fire it: a
	// PostgreSQL Query or Bind, a MySQL COM_QUERY or COM_STMT_EXECUTE.
	AfterSend
)

// String returns the name of the constant.
func (w When) String() string {
	switch w {
	case BeforeSend:
		return "BeforeSend"
	case AfterSend:
		return "AfterSend"
	}
	return fmt.Sprintf("When(%d)", int(w))
}

// Rule says which client statement to cut a connection at, and when.
type Rule struct {
	// Match is looked for, ignoring case, in the statement's SQL text. Nil
	// (or empty) matches the next statement message of any connection,
	// whatever it is. Beware of the pool's own statements: pgx's stdlib pings
	// a connection on its first reuse and after a second idle, and pgxpool
	// after a second idle.
	Match []byte
	// When is BeforeSend or AfterSend.
	When When
	// Times is how many connections the rule cuts before it is spent: 0
	// means once, a negative number means until Clear.
	Times int
}

// Stats counts what a Proxy has done since Start.
type Stats struct {
	Conns      int // connections accepted and connected to the target
	Open       int // of those, the ones still open
	Refused    int // connections closed on arrival because of Refuse
	DialErrors int // connections closed because the target could not be reached
	CutBefore  int // connections cut by a BeforeSend rule
	CutAfter   int // connections cut by an AfterSend rule
	CutAll     int // connections cut by CutAll
}

// Proxy forwards the TCP connections it accepts to one target and cuts them
// as its rules say. Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close, for dials under way
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	refuse bool
	rules  []*rule
	conns  map[*conn]struct{}
	stats  Stats
}

type rule struct {
	match []byte // lower case; empty matches any statement
	when  When
	left  int // cuts left; negative: unlimited
}

// Start listens on a free port of 127.0.0.1 and forwards every connection
// it accepts to target (host:port).
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, conns: map[*conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the host:port that clients should connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops listening, cuts every connection and waits until all of the
// proxy's goroutines have ended.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := p.open()
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, c := range conns {
		c.close()
	}
	p.wg.Wait()
	return err
}

// Cut adds a rule. Rules are tried in the order they were added, and a
// message fires the first that matches. Cut panics if r.When is neither
// BeforeSend nor AfterSend.
func (p *Proxy) Cut(r Rule) {
	if r.When != BeforeSend && r.When != AfterSend {
		panic("faultproxy: Rule.When must be BeforeSend or AfterSend")
	}
	left := r.Times
	if left == 0 {
		left = 1
	}
	p.mu.Lock()
	p.rules = append(p.rules, &rule{match: bytes.ToLower(r.Match), when: r.When, left: left})
	p.mu.Unlock()
}

// Clear removes the rules that have not been spent.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// CutAll cuts every open connection now, and returns how many it cut.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	conns := p.open()
	p.stats.CutAll += len(conns)
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	return len(conns)
}

// Refuse sets whether new connections are closed as soon as they are
// accepted, before the target is dialled. Open connections are not touched.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Open = len(p.conns)
	return s
}

// open lists the open connections; p.mu is held.
func (p *Proxy) open() []*conn {
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	return conns
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		p.mu.Lock()
		refuse := p.refuse || p.closed
		if refuse {
			p.stats.Refused++
		}
		p.mu.Unlock()
		if refuse {
			client.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

// serve dials the target for client and forwards both ways until either
// side ends or the connection is cut.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: 10 * time.Second}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		p.mu.Lock()
		p.stats.DialErrors++
		p.mu.Unlock()
		client.Close()
		return
	}
	c := &conn{p: p, client: client, server: server, stmts: map[string][]byte{}}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	p.conns[c] = struct{}{}
	p.stats.Conns++
	p.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		c.serverToClient()
	}()
	c.clientToServer()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// match returns the When of the first rule that text fires, spending it,
// or 0. exec says whether the message executes a statement.
func (p *Proxy) match(text []byte, exec bool) When {
	p.mu.Lock()
	defer p.mu.Unlock()
	var lower []byte
	for i, r := range p.rules {
		if r.when == AfterSend && !exec {
			continue
		}
		if len(r.match) > 0 {
			if lower == nil {
				lower = bytes.ToLower(text)
			}
			if !bytes.Contains(lower, r.match) {
				continue
			}
		}
		if r.left > 0 {
			r.left--
			if r.left == 0 {
				p.rules = append(p.rules[:i:i], p.rules[i+1:]...)
			}
		}
		return r.when
	}
	return 0
}

// counted records a cut by a rule.
func (p *Proxy) counted(w When) {
	p.mu.Lock()
	if w == BeforeSend {
		p.stats.CutBefore++
	} else {
		p.stats.CutAfter++
	}
	p.mu.Unlock()
}
