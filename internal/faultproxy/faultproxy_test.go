package faultproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fakeServer echoes what it receives. As MySQL it greets first and answers
// a COM_STMT_PREPARE with a prepare OK for statement 7 instead.
type fakeServer struct {
	t     *testing.T
	ln    net.Listener
	mysql bool
	wg    sync.WaitGroup

	mu  sync.Mutex
	got bytes.Buffer // everything received, on all connections
}

func startFake(t *testing.T, mysql bool) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, ln: ln, mysql: mysql}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go f.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeServer) serve(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	if f.mysql {
		c.Write(myPacket(0, []byte{10, 'f', 'a', 'k', 'e', 0}))
	}
	var pending []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		f.mu.Lock()
		f.got.Write(buf[:n])
		f.mu.Unlock()
		pending = append(pending, buf[:n]...)
		if !f.mysql {
			c.Write(pending)
			pending = pending[:0]
		}
		for f.mysql && len(pending) >= 4 {
			l := 4 + (int(pending[0]) | int(pending[1])<<8 | int(pending[2])<<16)
			if len(pending) < l {
				break
			}
			if pending[3] == 0 && pending[4] == comStmtPrepare {
				c.Write(myPacket(1, []byte{0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}))
			} else {
				c.Write(pending[:l])
			}
			pending = pending[l:]
		}
		if err != nil {
			return
		}
	}
}

// received returns what the server has received so far.
func (f *fakeServer) received() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.got.Bytes())
}

func myPacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

func pgMsg(typ byte, parts ...string) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
		body = append(body, 0)
	}
	m := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(m[1:], uint32(4+len(body)))
	return append(m, body...)
}

func pgStartup() []byte {
	body := []byte("user\x00postgres\x00\x00")
	m := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(m, uint32(8+len(body)))
	binary.BigEndian.PutUint32(m[4:], 196608)
	return append(m, body...)
}

func start(t *testing.T, f *fakeServer) *Proxy {
	p, err := Start(f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// roundTrip writes each of msgs, one byte per write if split, and reads
// back as many bytes as it wrote (the fake server echoes).
func roundTrip(c net.Conn, split bool, msgs ...[]byte) error {
	all := bytes.Join(msgs, nil)
	if split {
		for i := range all {
			if _, err := c.Write(all[i : i+1]); err != nil {
				return err
			}
			time.Sleep(time.Millisecond)
		}
	} else if _, err := c.Write(all); err != nil {
		return err
	}
	_, err := io.ReadFull(c, make([]byte, len(all)))
	return err
}

// waitCut waits until the proxy has no open connection.
func waitCut(t *testing.T, p *Proxy) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); p.Stats().Open > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("connection still open: %+v", p.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPostgresSimpleQuery(t *testing.T) {
	for _, w := range []When{BeforeSend, AfterSend} {
		t.Run(w.String(), func(t *testing.T) {
			f := startFake(t, false)
			p := start(t, f)
			c := dial(t, p)
			// The start-up message and a statement, each split byte by
			// byte; the rule is set but must not fire on other text.
			p.Cut(Rule{Match: []byte("insert into t"), When: w})
			if err := roundTrip(c, true, pgStartup(), pgMsg('Q', "SELECT 1")); err != nil {
				t.Fatal(err)
			}
			err := roundTrip(c, true, pgMsg('Q', "Insert Into t VALUES (1)"))
			if err == nil {
				t.Fatal("no cut")
			}
			waitCut(t, p)
			sent := bytes.Contains(f.received(), []byte("Insert Into t"))
			if sent != (w == AfterSend) {
				t.Errorf("%v: server received the statement: %v", w, sent)
			}
			s := p.Stats()
			if s.CutBefore+s.CutAfter != 1 || s.Conns != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestPostgresCachedStatement(t *testing.T) {
	for _, w := range []When{BeforeSend, AfterSend} {
		t.Run(w.String(), func(t *testing.T) {
			f := startFake(t, false)
			p := start(t, f)
			c := dial(t, p)
			if err := roundTrip(c, false, pgStartup(), pgMsg('P', "s1", "INSERT INTO t VALUES ($1)", "\x00"), pgMsg('S')); err != nil {
				t.Fatal(err)
			}
			// Set after the Parse: the Bind still matches by the name.
			p.Cut(Rule{Match: []byte("INSERT INTO t"), When: w})
			bind := pgMsg('B', "", "s1", "xyz")
			err := roundTrip(c, false, bind, pgMsg('E', ""), pgMsg('S'))
			if err == nil {
				t.Fatal("no cut")
			}
			waitCut(t, p)
			got := f.received()
			if sent := bytes.Contains(got, bind); sent != (w == AfterSend) {
				t.Errorf("server received the Bind: %v", sent)
			}
			if w == AfterSend && !bytes.HasSuffix(got, pgMsg('S')) {
				t.Errorf("the batch was not forwarded through its Sync")
			}
		})
	}
}

func TestPostgresClosedStatement(t *testing.T) {
	f := startFake(t, false)
	p := start(t, f)
	c := dial(t, p)
	if err := roundTrip(c, false, pgStartup(), pgMsg('P', "s1", "INSERT INTO t VALUES ($1)", "\x00"), pgMsg('C', "Ss1"), pgMsg('P', "s1", "SELECT 2", "\x00"), pgMsg('S')); err != nil {
		t.Fatal(err)
	}
	p.Cut(Rule{Match: []byte("INSERT INTO t"), When: BeforeSend})
	if err := roundTrip(c, false, pgMsg('B', "", "s1"), pgMsg('E', ""), pgMsg('S')); err != nil {
		t.Fatalf("a statement parsed anew under the same name still matched: %v", err)
	}
}

func TestPostgresNilMatch(t *testing.T) {
	f := startFake(t, false)
	p := start(t, f)
	c := dial(t, p)
	p.Cut(Rule{When: BeforeSend})
	// Start-up and Sync are no statements.
	if err := roundTrip(c, false, pgStartup(), pgMsg('S')); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c, false, pgMsg('Q', "SELECT 1")); err == nil {
		t.Fatal("no cut")
	}
	waitCut(t, p)
	if bytes.Contains(f.received(), []byte("SELECT 1")) {
		t.Error("server received the statement")
	}
}

func TestTLSIsForwardedUnread(t *testing.T) {
	f := startFake(t, false)
	p := start(t, f)
	c := dial(t, p)
	p.Cut(Rule{When: BeforeSend})
	ssl := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}
	hello := append([]byte{0x16, 3, 1, 0, 5}, pgMsg('Q', "x")...)
	if err := roundTrip(c, false, ssl, hello); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.CutBefore != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestMySQL(t *testing.T) {
	hello := myPacket(1, []byte{0x00, 0x02, 0, 0, 0, 0, 0, 1, 33})
	for _, c := range []struct {
		name string
		w    When
		rule string
		cmd  []byte
	}{
		{"query/before", BeforeSend, "insert", myPacket(0, append([]byte{comQuery}, "INSERT INTO t VALUES (1)"...))},
		{"query/after", AfterSend, "insert", myPacket(0, append([]byte{comQuery}, "INSERT INTO t VALUES (1)"...))},
		{"execute/before", BeforeSend, "insert", myPacket(0, []byte{comStmtExecute, 7, 0, 0, 0, 0, 1, 0, 0, 0})},
		{"execute/after", AfterSend, "insert", myPacket(0, []byte{comStmtExecute, 7, 0, 0, 0, 0, 1, 0, 0, 0})},
		{"nil/before", BeforeSend, "", myPacket(0, []byte{comStmtExecute, 7, 0, 0, 0, 0, 1, 0, 0, 0})},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := startFake(t, true)
			p := start(t, f)
			conn := dial(t, p)
			if _, err := io.ReadFull(conn, make([]byte, 10)); err != nil { // the greeting
				t.Fatal(err)
			}
			if err := roundTrip(conn, true, hello); err != nil {
				t.Fatal(err)
			}
			prep := myPacket(0, append([]byte{comStmtPrepare}, "INSERT INTO t VALUES (?)"...))
			if _, err := conn.Write(prep); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(conn, make([]byte, 16)); err != nil { // the prepare OK
				t.Fatal(err)
			}
			var rule []byte
			if c.rule != "" {
				rule = []byte(c.rule)
			}
			p.Cut(Rule{Match: rule, When: c.w})
			if err := roundTrip(conn, true, c.cmd); err == nil {
				t.Fatal("no cut")
			}
			waitCut(t, p)
			if sent := bytes.HasSuffix(f.received(), c.cmd); sent != (c.w == AfterSend) {
				t.Errorf("server received the command: %v", sent)
			}
		})
	}
}

func TestMySQLUnmatchedStatementPasses(t *testing.T) {
	f := startFake(t, true)
	p := start(t, f)
	conn := dial(t, p)
	io.ReadFull(conn, make([]byte, 10))
	if err := roundTrip(conn, false, myPacket(1, []byte{0x00, 0x02, 0, 0, 0, 0, 0, 1, 33})); err != nil {
		t.Fatal(err)
	}
	conn.Write(myPacket(0, append([]byte{comStmtPrepare}, "SELECT ?"...)))
	io.ReadFull(conn, make([]byte, 16))
	p.Cut(Rule{Match: []byte("INSERT"), When: BeforeSend})
	if err := roundTrip(conn, false, myPacket(0, []byte{comStmtExecute, 7, 0, 0, 0, 0, 1, 0, 0, 0})); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(conn, false, myPacket(0, append([]byte{comQuery}, "insert 1"...))); err == nil {
		t.Fatal("no cut")
	}
}

func TestTimesAndClear(t *testing.T) {
	f := startFake(t, false)
	p := start(t, f)
	p.Cut(Rule{Match: []byte("cut me"), When: BeforeSend, Times: 2})
	for i, want := range []bool{true, true, false} {
		c := dial(t, p)
		err := roundTrip(c, false, pgStartup(), pgMsg('Q', "cut me"))
		if (err != nil) != want {
			t.Errorf("connection %d: cut %v, want %v", i, err != nil, want)
		}
	}
	p.Cut(Rule{Match: []byte("cut me"), When: AfterSend, Times: -1})
	p.Clear()
	if err := roundTrip(dial(t, p), false, pgStartup(), pgMsg('Q', "cut me")); err != nil {
		t.Errorf("cut after Clear: %v", err)
	}
}

func TestRefuseAndCutAll(t *testing.T) {
	f := startFake(t, false)
	p := start(t, f)
	open := dial(t, p)
	if err := roundTrip(open, false, pgStartup()); err != nil {
		t.Fatal(err)
	}
	p.Refuse(true)
	if err := roundTrip(dial(t, p), false, pgStartup()); err == nil {
		t.Error("refused connection worked")
	}
	if err := roundTrip(open, false, pgMsg('Q', "SELECT 1")); err != nil {
		t.Errorf("Refuse touched an open connection: %v", err)
	}
	p.Refuse(false)
	if n := p.CutAll(); n != 1 {
		t.Errorf("CutAll cut %d, want 1", n)
	}
	if _, err := open.Read(make([]byte, 1)); err == nil {
		t.Error("read after CutAll worked")
	}
	if err := roundTrip(dial(t, p), false, pgStartup()); err != nil {
		t.Error(err)
	}
	s := p.Stats()
	if s.Refused != 1 || s.CutAll != 1 || s.Conns != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestDialError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p, err := Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p)
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("read worked")
	}
	if s := p.Stats(); s.DialErrors != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestManyConnections runs many connections at once, cuts them every way,
// and checks that Close leaves no goroutine behind.
func TestManyConnections(t *testing.T) {
	f := startFake(t, false)
	p, err := Start(f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p.Cut(Rule{Match: []byte("before"), When: BeforeSend, Times: -1})
	p.Cut(Rule{Match: []byte("after"), When: AfterSend, Times: -1})
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			q := [...]string{"SELECT before", "SELECT after", "SELECT 1", "SELECT 2"}[i%4]
			err = roundTrip(c, i%8 < 4, pgStartup(), pgMsg('Q', "SELECT 0"), pgMsg('Q', q))
			if (err != nil) != (i%4 < 2) {
				errs <- errors.New(q + ": " + errOrNil(err))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := p.Stats()
	if s.Conns != n || s.CutBefore != n/4 || s.CutAfter != n/4 {
		t.Errorf("stats %+v", s)
	}
	// Leave some open for Close to cut.
	for range 20 {
		c := dial(t, p)
		if err := roundTrip(c, false, pgStartup()); err != nil {
			t.Fatal(err)
		}
	}
	p.CutAll()
	for range 20 {
		dial(t, p)
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	// Close waits for the proxy's goroutines; none may be left, once those
	// that have returned their last value are off the stack.
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stacks := buf[:runtime.Stack(buf, true)]
		if !bytes.Contains(stacks, []byte("faultproxy.(*Proxy)")) && !bytes.Contains(stacks, []byte("faultproxy.(*conn)")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after Close:\n%s", stacks)
		}
	}
}

func errOrNil(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
