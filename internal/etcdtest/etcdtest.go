// Package etcdtest runs real etcd servers (test/k8s/bin/etcd, the version the
// deployment uses) on loopback for tests and benchmarks.
package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// startTimeout bounds how long a cluster may take to answer.
const startTimeout = 30 * time.Second

// Cluster is a running etcd cluster; the test's cleanup stops it.
type Cluster struct {
	Endpoints []string
	tls       *tls.Config
	procs     []*exec.Cmd
	logs      []*testutil.SyncBuffer
}

// Binary returns test/k8s/bin/etcd of the repository the test runs in, or
// skips the test (fails it under RECOVERBOT_REQUIRE_INTEGRATION=1).
func Binary(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("etcdtest: no go.mod above the test's directory")
		}
		dir = parent
	}
	bin := filepath.Join(dir, "test", "k8s", "bin", "etcd")
	if _, err := os.Stat(bin); err != nil {
		msg := bin + " is missing: build it with `test/k8s/build.sh etcd` (.ci/run does) to run this test"
		if testutil.RequireIntegration() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// Start runs a cluster of members (1 or 3) in t.TempDir() on free loopback
// ports, with flags added to every member, and waits until it answers.
func Start(t testing.TB, members int, flags ...string) *Cluster {
	t.Helper()
	return start(t, members, "http", nil, flags)
}

// StartTLS runs one member serving clients over TLS with certFile and
// keyFile, requiring client certificates signed by caFile; client is what
// the cluster's own readiness check presents.
func StartTLS(t testing.TB, certFile, keyFile, caFile string, client *tls.Config) *Cluster {
	t.Helper()
	return start(t, 1, "https", client, []string{"--cert-file", certFile, "--key-file", keyFile,
		"--trusted-ca-file", caFile, "--client-cert-auth"})
}

func start(t testing.TB, members int, scheme string, client *tls.Config, flags []string) *Cluster {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	type member struct{ name, client, peer string }
	ms := make([]member, members)
	var initial []string
	for i := range ms {
		ms[i] = member{fmt.Sprintf("m%d", i), scheme + "://" + testutil.FreePort(t), "http://" + testutil.FreePort(t)}
		initial = append(initial, ms[i].name+"="+ms[i].peer)
	}
	c := &Cluster{tls: client}
	for _, m := range ms {
		args := append([]string{
			"--name", m.name,
			"--data-dir", filepath.Join(dir, m.name),
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", "recoverbot-test",
			"--log-level", "warn",
		}, flags...)
		cmd := exec.Command(bin, args...)
		log := &testutil.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("etcdtest: start %s: %v", bin, err)
		}
		c.procs = append(c.procs, cmd)
		c.logs = append(c.logs, log)
		c.Endpoints = append(c.Endpoints, m.client)
	}
	t.Cleanup(c.stop)
	c.wait(t)
	return c
}

func (c *Cluster) stop() {
	for _, p := range c.procs {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
}

// wait returns once every member answers a linearizable read.
func (c *Cluster) wait(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for i, ep := range c.Endpoints {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: c.tls, DialTimeout: startTimeout, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		for {
			attempt, stop := context.WithTimeout(ctx, time.Second)
			_, err = cli.Get(attempt, "health")
			stop()
			if err == nil || ctx.Err() != nil {
				break
			}
		}
		cli.Close()
		if err != nil {
			t.Fatalf("etcdtest: member %d (%s) did not answer within %v: %v\n%s", i, ep, startTimeout, err, c.logs[i].String())
		}
	}
}

// Client returns a client of every member, closed by the test's cleanup.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, TLS: c.tls, DialTimeout: startTimeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("etcdtest: close client: %v", err)
		}
	})
	return cli
}
