package redisserver

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start(context.Background(), Options{})
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	return s
}

func TestStartKillRestartOnTheSamePort(t *testing.T) {
	s := start(t)
	assert.NotEqual(t, 6379, s.Port())
	_, err := s.Command("SET", "k", "v")
	require.NoError(t, err)

	s.Kill()
	_, err = s.Command("PING")
	require.Error(t, err, "a killed server does not answer")

	port := s.Port()
	require.NoError(t, s.Restart(context.Background()))
	assert.Equal(t, port, s.Port())
	reply, err := s.Command("GET", "k")
	require.NoError(t, err)
	assert.Equal(t, "$-1", reply, "persistence is off: a restart starts empty")
}

func TestPauseAndResume(t *testing.T) {
	s := start(t)
	require.NoError(t, s.Pause())
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	require.NoError(t, err, "the kernel still accepts connections for a stopped process")
	conn.SetDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = conn.Write([]byte("PING\r\n"))
	require.NoError(t, err)
	_, err = conn.Read(make([]byte, 16))
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "a paused server answers nothing: %v", err)
	conn.Close()
	require.NoError(t, s.Resume())
	reply, err := s.Command("PING")
	require.NoError(t, err)
	assert.Equal(t, "+PONG", reply)
}

func TestKillClients(t *testing.T) {
	s := start(t)
	conn, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n"))
	require.NoError(t, err)
	_, err = conn.Read(make([]byte, 64)) // the subscribe confirmation
	require.NoError(t, err)
	n, err := s.KillClients("pubsub")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = conn.Read(make([]byte, 64))
	assert.Error(t, err, "the killed connection is closed")
}

func TestStartWithArgs(t *testing.T) {
	s, err := Start(context.Background(), Options{Args: []string{"--maxmemory", "12mb"}})
	require.NoError(t, err)
	defer s.Stop()
	reply, err := s.Command("CONFIG", "GET", "maxmemory")
	require.NoError(t, err)
	assert.Equal(t, "*2", reply)
	_, err = s.Command("NOSUCHCOMMAND")
	assert.Error(t, err)
}

func TestMissingBinaryIsAClearError(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Start(context.Background(), Options{})
	require.ErrorIs(t, err, ErrNotInstalled)
	assert.True(t, strings.Contains(err.Error(), "make test"), err.Error())
}

func TestStopIsIdempotentAndStopsAPausedServer(t *testing.T) {
	s, err := Start(context.Background(), Options{})
	require.NoError(t, err)
	require.NoError(t, s.Pause())
	s.Stop()
	s.Stop()
	_, err = s.Command("PING")
	assert.Error(t, err)
}
