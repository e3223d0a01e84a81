package testdb

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/getorcreate/getorcreate/internal/dsn"
)

// Server is a database server a test started for itself, in a directory of
// its own, so that it can stop, kill and restart it without touching the
// servers other tests share. Close stops it (t.Cleanup does too).
type Server struct {
	Kind string // "postgres" or "mysql"
	DSN  string // the project DSN form
	dir  string
	port int
	cred *syscall.Credential // the OS user the server runs as
	cmd  *exec.Cmd
	// exited is closed when cmd has exited.
	exited chan struct{}
	t      testing.TB
}

// OwnServer starts a fresh server of the given kind ("postgres": the
// PostgreSQL 15 binaries; "mysql": mariadbd) on a free port of 127.0.0.1,
// run as its usual OS user, with a database "test". It skips t when the
// binaries are missing or the test is not root (the servers refuse to run
// as root, and only root can run them as another user).
func OwnServer(t testing.TB, kind string) *Server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("starting a server of the test's own needs root")
	}
	owner := map[string]string{"postgres": "postgres", "mysql": "mysql"}[kind]
	if owner == "" {
		t.Fatalf("no server of kind %q", kind)
	}
	u, err := user.Lookup(owner)
	if err != nil {
		t.Skipf("no %s user: %v", owner, err)
	}
	dir, err := os.MkdirTemp("", "goc-"+kind+"-")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	s := &Server{Kind: kind, dir: dir, port: freePort(t), t: t, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	t.Cleanup(func() { s.Close(); os.RemoveAll(dir) })
	switch kind {
	case "postgres":
		initdb := "/usr/lib/postgresql/15/bin/initdb"
		if _, err := os.Stat(initdb); err != nil {
			t.Skip("no PostgreSQL 15 binaries")
		}
		s.run(initdb, "-D", s.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
		conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\nmax_connections = 200\n", s.port, dir)
		if err := os.WriteFile(filepath.Join(s.data(), "postgresql.auto.conf"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(filepath.Join(s.data(), "postgresql.auto.conf"), uid, gid)
		s.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/test?sslmode=disable", s.port)
	case "mysql":
		s.run("mariadb-install-db", "--no-defaults", "--user=mysql", "--datadir="+s.data(), "--auth-root-authentication-method=normal", "--skip-test-db")
		s.DSN = fmt.Sprintf("mysql://root@127.0.0.1:%d/test", s.port)
	default:
		t.Fatalf("no server of kind %q", kind)
	}
	s.Start()
	db := s.admin()
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE test"); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// command runs as the server's OS user, in a process group of its own,
// so that Kill reaches every process of the server.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	return cmd
}

func (s *Server) run(name string, args ...string) {
	s.t.Helper()
	out, err := s.command(name, args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// admin opens the server's maintenance database.
func (s *Server) admin() *sql.DB {
	s.t.Helper()
	d := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	if s.Kind == "mysql" {
		d = fmt.Sprintf("mysql://root@127.0.0.1:%d/mysql", s.port)
	}
	db, _, err := dsn.Open(context.Background(), d)
	if err != nil {
		s.t.Fatal(err)
	}
	return db
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	var args []string
	if s.Kind == "postgres" {
		args = []string{"/usr/lib/postgresql/15/bin/postgres", "-D", s.data()}
	} else {
		args = []string{"/usr/sbin/mariadbd", "--no-defaults", "--user=mysql", "--datadir=" + s.data(),
			"--port=" + strconv.Itoa(s.port), "--bind-address=127.0.0.1", "--socket=" + filepath.Join(s.dir, "mysqld.sock"),
			"--pid-file=" + filepath.Join(s.dir, "mysqld.pid"), "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=2",
			"--skip-log-bin", "--max-connections=200", "--character-set-server=utf8mb4"}
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// After a kill the old backends may take a moment to go, and
		// PostgreSQL refuses to start while they hold its shared memory:
		// start again until it stays up.
		cmd := s.command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			s.t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		s.cmd, s.exited = cmd, exited
		for time.Now().Before(deadline) {
			select {
			case <-exited:
			default:
				if s.answers() {
					return
				}
				time.Sleep(100 * time.Millisecond)
				continue
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	s.t.Fatalf("%s did not start in 30 s:\n%s", s.Kind, b)
}

// answers reports whether the server accepts connections and queries.
func (s *Server) answers() bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	d := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	if s.Kind == "mysql" {
		d = fmt.Sprintf("mysql://root@127.0.0.1:%d/mysql", s.port)
	}
	db, _, err := dsn.Open(context.Background(), d)
	if err != nil {
		return false
	}
	db.Close()
	return true
}

// Kill kills the server's processes at once, as a crash would: mariadbd,
// or the postmaster and every backend (each backend makes itself a process
// group leader, so a signal to the postmaster's group would miss them).
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pid := s.cmd.Process.Pid
	children := childrenOf(pid)
	syscall.Kill(-pid, syscall.SIGKILL)
	for _, c := range children {
		syscall.Kill(c, syscall.SIGKILL)
	}
	<-s.exited
	for _, c := range children {
		for i := 0; i < 100 && syscall.Kill(c, 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	s.cmd = nil
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
		rest := string(b)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// Stop stops the server cleanly (SIGTERM: PostgreSQL's smart shutdown
// would wait for the clients, so fast shutdown, SIGINT, for it).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	sig := syscall.SIGTERM
	if s.Kind == "postgres" {
		sig = syscall.SIGINT
	}
	syscall.Kill(-s.cmd.Process.Pid, sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Close stops the server if it runs.
func (s *Server) Close() { s.Stop() }

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
