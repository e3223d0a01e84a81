package racecheck

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/getorcreate/getorcreate/internal/dsn"
)

// The worker protocol, one line each way per step, over the worker's stdin
// and stdout:
//
//	parent: <strategyRun as JSON>      worker: ready | error MSG
//	parent: go R UNIXNANO              worker: done R | error MSG
//	parent: end                        worker: stats <stats as JSON>
//
// "go" carries the instant the round starts. The parent sends it a few
// milliseconds ahead to every worker process, and each parks its goroutines
// until that instant: a barrier that releases all processes together,
// whatever order the pipes were written in and however late each worker read
// its line.

// workerEnv marks a process started as a racecheck worker.
const workerEnv = "RACECHECK_WORKER"

// barrierLead is how far ahead of "now" the parent sets a round's start, so
// that every process has read its "go" line before the instant passes.
const barrierLead = 20 * time.Millisecond

// IsWorker reports whether this process was started by Run as a worker
// process; main (or TestMain) should then call WorkerMain and exit.
func IsWorker() bool { return os.Getenv(workerEnv) == "1" }

// WorkerMain runs the worker side of a multi-process run on the given
// protocol streams (the process's stdin and stdout) and returns the exit
// status. It is for binaries that call Run with Procs > 1.
func WorkerMain(ctx context.Context, in io.Reader, out io.Writer) int {
	// An interrupt at the terminal reaches the whole process group; the
	// parent decides when its workers stop (it closes their stdin or
	// kills them), so a worker ignores it rather than die mid-round.
	signal.Ignore(os.Interrupt)
	r := bufio.NewReader(in)
	w := bufio.NewWriter(out)
	say := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\n", args...)
		w.Flush()
	}
	fail := func(err error) int {
		say("error %s", oneLine(err.Error()))
		return 1
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return fail(fmt.Errorf("reading the run: %w", err))
	}
	var sr strategyRun
	if err := json.Unmarshal([]byte(line), &sr); err != nil {
		return fail(fmt.Errorf("reading the run: %w", err))
	}
	db, p, err := dsn.Open(ctx, sr.DSN)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	e, err := openEnv(ctx, db, p.Kind, sr)
	if err != nil {
		return fail(err)
	}
	l := newLocal(e, sr)
	say("ready")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 1 // the parent went away
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "go":
			round, err1 := strconv.Atoi(f[1])
			start, err2 := strconv.ParseInt(f[2], 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				return fail(err)
			}
			if err := l.round(ctx, round, time.Unix(0, start)); err != nil {
				return fail(err)
			}
			say("done %d", round)
		case len(f) == 1 && f[0] == "end":
			st, _ := l.finish(ctx)
			b, err := json.Marshal(st)
			if err != nil {
				return fail(err)
			}
			say("stats %s", b)
			return 0
		default:
			return fail(fmt.Errorf("unexpected line %q", line))
		}
	}
}

// remote runs workers in child processes.
type remote struct {
	ctx  context.Context
	kids []*kid
	stop func() bool
}

type kid struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *tailBuffer
}

// tailBuffer keeps the last few KiB a worker wrote on stderr; exec's copying
// goroutine writes it while the parent may read it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = t.b[len(t.b)-8<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// startRemote starts one worker process per slice of workers and waits
// until every one has connected and reported ready.
func startRemote(ctx context.Context, command func() ([]string, error), sr strategyRun, procs int) (_ *remote, err error) {
	if command == nil {
		command = selfCommand
	}
	argv, err := command()
	if err != nil {
		return nil, err
	}
	rm := &remote{ctx: ctx}
	defer func() {
		if err != nil {
			rm.close()
		}
	}()
	// Workers are dealt out round-robin, so process p runs workers p,
	// p+procs, ...
	for p := range procs {
		part := sr
		part.Workers = nil
		for w := p; w < len(sr.Workers); w += procs {
			part.Workers = append(part.Workers, sr.Workers[w])
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), workerEnv+"=1")
		k := &kid{cmd: cmd, stderr: &tailBuffer{}}
		cmd.Stderr = k.stderr
		if k.in, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		k.out = bufio.NewReader(out)
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting worker process: %w", err)
		}
		rm.kids = append(rm.kids, k)
		b, _ := json.Marshal(part)
		if _, err := fmt.Fprintf(k.in, "%s\n", b); err != nil {
			return nil, rm.failure(k, err)
		}
	}
	// A cancelled run (an interrupt) kills the workers, which unblocks
	// every read below.
	rm.stop = context.AfterFunc(ctx, rm.kill)
	for _, k := range rm.kids {
		if _, err := rm.expect(k, "ready"); err != nil {
			return nil, err
		}
	}
	return rm, nil
}

// selfCommand re-executes this binary.
func selfCommand() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable to start worker processes: %w", err)
	}
	return []string{exe}, nil
}

func (rm *remote) round(ctx context.Context, r int, start time.Time) error {
	for _, k := range rm.kids {
		if _, err := fmt.Fprintf(k.in, "go %d %d\n", r, start.UnixNano()); err != nil {
			return rm.failure(k, err)
		}
	}
	for _, k := range rm.kids {
		if _, err := rm.expect(k, "done "+strconv.Itoa(r)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (rm *remote) finish(context.Context) (stats, error) {
	all := newStats()
	for _, k := range rm.kids {
		if _, err := fmt.Fprintln(k.in, "end"); err != nil {
			return all, rm.failure(k, err)
		}
	}
	for _, k := range rm.kids {
		line, err := rm.expect(k, "stats ")
		if err != nil {
			return all, err
		}
		var st stats
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "stats ")), &st); err != nil {
			return all, fmt.Errorf("worker process %d: reading its stats: %w", k.cmd.Process.Pid, err)
		}
		all.merge(st)
	}
	return all, nil
}

// expect reads k's next line and checks it starts with want.
func (rm *remote) expect(k *kid, want string) (string, error) {
	line, err := k.out.ReadString('\n')
	line = strings.TrimRight(line, "\n")
	if err != nil {
		return "", rm.failure(k, err)
	}
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return "", fmt.Errorf("worker process %d: %s", k.cmd.Process.Pid, msg)
	}
	if !strings.HasPrefix(line, want) {
		return "", fmt.Errorf("worker process %d: said %q, want %q", k.cmd.Process.Pid, line, want)
	}
	return line, nil
}

// failure explains a broken pipe to k with what it wrote on stderr, or
// says the run was interrupted when that is why the pipe broke.
func (rm *remote) failure(k *kid, err error) error {
	if cerr := rm.ctx.Err(); cerr != nil {
		return cerr
	}
	msg := strings.TrimSpace(k.stderr.String())
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:]
	}
	if msg != "" {
		return fmt.Errorf("worker process %d: %v (stderr: %s)", k.cmd.Process.Pid, err, msg)
	}
	return fmt.Errorf("worker process %d: %w", k.cmd.Process.Pid, err)
}

func (rm *remote) kill() {
	for _, k := range rm.kids {
		_ = k.cmd.Process.Kill()
	}
}

// close ends the workers: EOF on stdin makes each one return, and a worker
// that has not exited after a few seconds is killed.
func (rm *remote) close() {
	if rm.stop != nil {
		rm.stop()
	}
	var wg sync.WaitGroup
	for _, k := range rm.kids {
		k.in.Close()
		wg.Go(func() {
			done := make(chan struct{})
			go func() {
				_ = k.cmd.Wait()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = k.cmd.Process.Kill()
				<-done
			}
		})
	}
	wg.Wait()
}
