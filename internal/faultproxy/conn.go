package faultproxy

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
)

// The phases of the client's side of a connection, read by clientToServer.
const (
	phaseNew       = iota // nothing received yet
	phasePGStartup        // PostgreSQL: untyped start-up messages
	phasePG               // PostgreSQL: typed messages
	phaseMyHello          // MySQL: the handshake response (or SSL request)
	phaseMy               // MySQL: packets
	phaseOpaque           // unknown, TLS or compressed: forwarded unread
)

// What an AfterSend rule still lets through once it has fired.
const (
	afterNone      = iota
	afterUntilSync // the rest of a PostgreSQL extended-protocol batch
	afterHold      // nothing: the connection is waiting for its cut
)

const (
	maxMessage = 1 << 30 // larger lengths are taken for a protocol not understood

	pgSSLRequest  = 80877103
	pgGSSENCReqst = 80877104

	myClientCompress = 0x20
	myClientSSL      = 0x800

	comQuery           = 0x03
	comChangeUser      = 0x11
	comStmtPrepare     = 0x16
	comStmtExecute     = 0x17
	comStmtClose       = 0x19
	comResetConnection = 0x1f
	comStmtBulkExecute = 0xfa // MariaDB
)

const (
	protoUnknown = iota
	protoPG
	protoMySQL
)

// conn is one proxied connection.
type conn struct {
	p              *Proxy
	client, server net.Conn
	closeOnce      sync.Once

	// Used by clientToServer only.
	phase int
	after int

	mu         sync.Mutex
	proto      int               // set by the side that speaks first
	stmts      map[string][]byte // prepared statement name or id -> lower-case SQL
	prepare    []byte            // MySQL: a prepare's SQL awaiting its answer
	prepAnswer []byte            // MySQL: the start of that answer so far
	cutOnReply bool              // an AfterSend rule fired: cut at the answer
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.client.Close()
		c.server.Close()
	})
}

func (c *conn) clientToServer() {
	defer c.close()
	buf := make([]byte, 32<<10)
	var pending []byte
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			var ok bool
			if pending, ok = c.fromClient(append(pending, buf[:n]...)); !ok {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// fromClient forwards the complete messages at the start of data, applying
// the rules, and returns the incomplete rest, or false once the connection
// is cut or broken.
func (c *conn) fromClient(data []byte) ([]byte, bool) {
	if c.phase == phaseNew {
		c.mu.Lock()
		if c.proto == protoUnknown {
			c.proto = protoPG
		}
		c.phase = phasePGStartup
		if c.proto == protoMySQL {
			c.phase = phaseMyHello
		}
		c.mu.Unlock()
	}
	end, cut := 0, false
	for end < len(data) {
		if c.after == afterHold {
			data = data[:end] // dropped: the connection is about to be cut
			break
		}
		n := c.frame(data[end:])
		if n == 0 {
			break
		}
		m := data[end : end+n]
		if c.after == afterUntilSync {
			if m[0] == 'S' {
				c.after = afterHold
			}
		} else if c.inspect(m) == BeforeSend {
			cut = true
			break
		}
		end += n
	}
	if end > 0 {
		if _, err := c.server.Write(data[:end]); err != nil {
			return nil, false
		}
	}
	if cut {
		c.p.counted(BeforeSend)
		c.close()
		return nil, false
	}
	return data[:copy(data, data[end:])], true
}

// frame returns the length of the complete message at the start of b, or 0
// if b holds only part of it.
func (c *conn) frame(b []byte) int {
	n := len(b)
	switch c.phase {
	case phasePGStartup:
		if b[0] == 0x16 { // a TLS handshake record
			c.phase = phaseOpaque
			return len(b)
		}
		if len(b) < 4 {
			return 0
		}
		n = int(binary.BigEndian.Uint32(b))
		if n < 8 {
			c.phase = phaseOpaque
			return len(b)
		}
	case phasePG:
		if len(b) < 5 {
			return 0
		}
		n = 1 + int(binary.BigEndian.Uint32(b[1:]))
		if n < 5 {
			c.phase = phaseOpaque
			return len(b)
		}
	case phaseMyHello, phaseMy:
		if len(b) < 4 {
			return 0
		}
		n = 4 + (int(b[0]) | int(b[1])<<8 | int(b[2])<<16)
	}
	if n > maxMessage {
		c.phase = phaseOpaque
		return len(b)
	}
	if len(b) < n {
		return 0
	}
	return n
}

// inspect follows the protocol through message m and returns the When of
// the rule it fires, or 0.
func (c *conn) inspect(m []byte) When {
	var text []byte
	exec := false
	switch c.phase {
	case phasePGStartup:
		if code := binary.BigEndian.Uint32(m[4:]); code != pgSSLRequest && code != pgGSSENCReqst {
			c.phase = phasePG
		}
		return 0
	case phaseMyHello:
		c.phase = phaseMy
		if len(m) < 8 || binary.LittleEndian.Uint32(m[4:])&(myClientSSL|myClientCompress) != 0 {
			c.phase = phaseOpaque
		}
		return 0
	case phasePG:
		body := m[5:]
		switch m[0] {
		case 'Q':
			text, _ = cstring(body)
			exec = true
		case 'P':
			name, rest := cstring(body)
			text, _ = cstring(rest)
			c.mu.Lock()
			c.stmts[string(name)] = bytes.ToLower(text)
			c.mu.Unlock()
		case 'B':
			_, rest := cstring(body)
			name, _ := cstring(rest)
			c.mu.Lock()
			text = c.stmts[string(name)]
			c.mu.Unlock()
			exec = true
		case 'C':
			if len(body) > 0 && body[0] == 'S' {
				name, _ := cstring(body[1:])
				c.mu.Lock()
				delete(c.stmts, string(name))
				c.mu.Unlock()
			}
			return 0
		default:
			return 0
		}
	case phaseMy:
		if m[3] != 0 || len(m) < 5 { // not the first packet of a command
			return 0
		}
		body := m[5:]
		switch m[4] {
		case comQuery:
			text, exec = body, true
		case comStmtPrepare:
			text = body
			c.mu.Lock()
			c.prepare = bytes.ToLower(text)
			c.prepAnswer = c.prepAnswer[:0]
			c.mu.Unlock()
		case comStmtExecute, comStmtBulkExecute:
			if len(body) >= 4 {
				c.mu.Lock()
				text = c.stmts[string(body[:4])]
				c.mu.Unlock()
			}
			exec = true
		case comStmtClose:
			if len(body) >= 4 {
				c.mu.Lock()
				delete(c.stmts, string(body[:4]))
				c.mu.Unlock()
			}
			return 0
		case comResetConnection, comChangeUser:
			c.mu.Lock()
			clear(c.stmts)
			c.mu.Unlock()
			return 0
		default:
			return 0
		}
	default:
		return 0
	}
	w := c.p.match(text, exec)
	if w == AfterSend {
		// Set before the message is written, so that the server's answer
		// cannot arrive first.
		c.mu.Lock()
		c.cutOnReply = true
		c.mu.Unlock()
		c.after = afterHold
		if c.phase == phasePG && m[0] == 'B' {
			c.after = afterUntilSync
		}
	}
	return w
}

// cstring splits b after its first NUL.
func cstring(b []byte) (s, rest []byte) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

func (c *conn) serverToClient() {
	defer c.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.server.Read(buf)
		if n > 0 {
			c.mu.Lock()
			if c.proto == protoUnknown {
				c.proto = protoMySQL
			}
			cut := c.cutOnReply
			if !cut && c.prepare != nil {
				c.prepared(buf[:n])
			}
			c.mu.Unlock()
			if cut {
				c.p.counted(AfterSend)
				return
			}
			if _, err := c.client.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// prepared reads the statement id from the start of the server's answer to
// a MySQL COM_STMT_PREPARE (header, then 0x00 and the id) and records the
// statement's text under it; c.mu is held.
func (c *conn) prepared(b []byte) {
	c.prepAnswer = append(c.prepAnswer, b[:min(len(b), 9-len(c.prepAnswer))]...)
	if len(c.prepAnswer) < 9 {
		return
	}
	if c.prepAnswer[4] == 0 { // else an error packet
		c.stmts[string(c.prepAnswer[5:9])] = c.prepare
	}
	c.prepare = nil
}
