package redisserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned when no redis-server binary is on the PATH.
var ErrNotInstalled = errors.New("redisserver: redis-server not found on PATH (run `make test`, which installs it, or `apt-get install -y redis-server`)")

// Options configures a server. The zero value starts a plain server.
type Options struct {
	// Args are extra redis-server arguments, e.g. {"--requirepass", "s3cret"}.
	Args []string
	// StartTimeout bounds how long Start waits for the server to answer
	// PING. Zero means 10s.
	StartTimeout time.Duration
	// Config, when set, is written to a config file in the server's
	// directory and given first (Sentinel needs a file it can rewrite).
	Config string
	// Sentinel runs the process as a Redis Sentinel (--sentinel).
	Sentinel bool
}

// Server is one redis-server process. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	port int
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// Start launches redis-server on a free loopback port and waits until it
// answers. Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	dir, err := os.MkdirTemp("", "tiercache-redis-")
	if err != nil {
		return nil, fmt.Errorf("redisserver: temp dir: %w", err)
	}
	// A port picked free can be taken by someone else before redis binds it;
	// try a few.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s := &Server{opts: opts, port: port, dir: dir}
		if lastErr = s.launch(ctx, bin); lastErr == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func freePort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("redisserver: free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port != 6379 {
			return port, nil
		}
	}
}

func (s *Server) launch(ctx context.Context, bin string) error {
	var args []string
	if s.opts.Config != "" || s.opts.Sentinel {
		conf := filepath.Join(s.dir, "redis.conf")
		if _, err := os.Stat(conf); err != nil { // a restart keeps what Sentinel wrote
			if err := os.WriteFile(conf, []byte(s.opts.Config), 0o600); err != nil {
				return fmt.Errorf("redisserver: config: %w", err)
			}
		}
		args = append(args, conf)
	}
	if s.opts.Sentinel {
		args = append(args, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--protected-mode", "no",
	)
	args = append(args, s.opts.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	var logTail strings.Builder
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisserver: start: %w", err)
	}
	exited := make(chan struct{})
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if logTail.Len() < 4096 {
				logTail.WriteString(sc.Text())
				logTail.WriteByte('\n')
			}
		}
	}()
	go func() {
		<-logDone
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.paused = cmd, exited, false
	s.mu.Unlock()

	deadline := time.Now().Add(s.opts.StartTimeout)
	for {
		if s.ping() == nil {
			return nil
		}
		select {
		case <-exited:
			<-logDone
			return fmt.Errorf("redisserver: redis-server on port %d exited at start: %s", s.port, logTail.String())
		case <-ctx.Done():
			s.Kill()
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redisserver: redis-server on port %d did not answer within %v", s.port, s.opts.StartTimeout)
		}
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// URL is a redis:// URL for the server.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Kill sends SIGKILL and waits for the process to exit. It is a no-op when
// the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT) // a stopped process still dies, but be explicit
	cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same port after Kill (or kills it
// first). The data set starts empty: persistence is off.
func (s *Server) Restart(ctx context.Context) error {
	s.Kill()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return ErrNotInstalled
	}
	// The old socket may linger briefly; retry the bind for a while.
	var lastErr error
	for range 50 {
		if lastErr = s.launch(ctx, bin); lastErr == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return lastErr
}

// Pause freezes the process with SIGSTOP: connections stay open but nothing
// is answered, like a server stuck in a long command or a network stall.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP, true) }

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT, false) }

func (s *Server) signal(sig syscall.Signal, paused bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("redisserver: server is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return err
	}
	s.paused = paused
	return nil
}

// Stop kills the server and removes its directory. Safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	paused := s.paused
	s.mu.Unlock()
	if paused {
		s.Resume()
	}
	s.Kill()
	os.RemoveAll(s.dir)
}

// KillClients runs CLIENT KILL TYPE <kind> (normal, pubsub, replica, master)
// and returns how many connections were closed.
func (s *Server) KillClients(kind string) (int, error) {
	reply, err := s.Command("CLIENT", "KILL", "TYPE", kind)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimPrefix(reply, ":"))
	if err != nil {
		return 0, fmt.Errorf("redisserver: CLIENT KILL reply %q", reply)
	}
	return n, nil
}

// ping reports whether the server answers. Any reply counts: a server
// that requires AUTH answers PING with -NOAUTH, and is up.
func (s *Server) ping() error {
	reply, err := s.Command("PING")
	if reply != "" {
		return nil
	}
	return err
}

// Command sends one command on a fresh connection and returns the first
// reply line (RESP2, e.g. "+OK", ":3", "-ERR …"). It is the harness's own
// tiny client, so controlling a server never depends on the code under test.
// Servers started with --requirepass need AUTH through Args; use a real
// client for those.
func (s *Server) Command(args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "-") {
		return line, fmt.Errorf("redisserver: %s", line[1:])
	}
	return line, nil
}
