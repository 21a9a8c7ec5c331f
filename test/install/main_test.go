// Package install proves the production install against a real
// kube-apiserver and the real kubectl: every kustomize overlay passes a
// server-side dry run, and `clonegate serve --cert-mode=self` creates its
// Secret, injects its CA, serves reviews the apiserver trusts, and survives a
// rotation without a restart — also with two replicas starting at once.
//
// It is a package of its own (not test/e2e) because it needs control planes
// with no webhooks pre-registered and no envtest-made certificate.
package install

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/clonegate/clonegate/internal/testenv"
)

var (
	root      string // repository root
	clonegate string // the binary under test
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	var err error
	if root, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// `go test ./test/...` outside make: use the control plane make tools built.
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if assets := filepath.Join(root, "bin", "k8s", "v1.37.2-etcd-v3.6.8"); exists(assets) {
			os.Setenv("KUBEBUILDER_ASSETS", assets)
		}
	}
	dir, err := os.MkdirTemp("", "clonegate-install-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if clonegate, err = testenv.BuildClonegate(root, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// cluster starts a control plane with no webhooks registered, as a fresh
// cluster has, and the CRDs given.
func cluster(t *testing.T, crds ...string) *testenv.Cluster {
	t.Helper()
	c, err := testenv.Start(testenv.Options{Root: root, WebhookPaths: []string{t.TempDir()}, CRDPaths: crds, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

// kubectl runs kubectl and fails the test unless it exits 0.
func kubectl(t *testing.T, c *testenv.Cluster, args ...string) testenv.Result {
	t.Helper()
	r := c.Kubectl("", args...)
	if r.Code != 0 {
		t.Fatalf("kubectl %s: exit %d\n%s", strings.Join(args, " "), r.Code, r.Output())
	}
	return r
}

// replica is one `clonegate serve` process of our own (testenv's StartServer
// runs one on envtest's certificate; these run several, in self mode).
type replica struct {
	name    string
	cmd     *exec.Cmd
	addr    string // webhook listener, 127.0.0.1:port
	probe   string
	metrics string
	certDir string
	log     *lockedBuffer
	exited  chan struct{}
	err     error
}

// startReplica runs clonegate serve in self mode on a port of its own; it
// does not wait for readiness, so that replicas can race.
func startReplica(t *testing.T, c *testenv.Cluster, name string, extra ...string) *replica {
	t.Helper()
	r := &replica{name: name, addr: freeAddr(t), probe: freeAddr(t), metrics: freeAddr(t),
		certDir: filepath.Join(t.TempDir(), "certs"), log: &lockedBuffer{}, exited: make(chan struct{})}
	_, port, _ := net.SplitHostPort(r.addr)
	args := append([]string{"serve",
		"--cert-mode=self",
		"--cert-namespace=clonegate-system",
		"--cert-extra-sans=127.0.0.1",
		"--cert-check-interval=1s",
		"--cert-dir", r.certDir,
		"--host", "127.0.0.1", "--port", port,
		"--health-probe-bind-address", r.probe,
		"--metrics-bind-address", r.metrics,
		"--shutdown-delay", "0s",
	}, extra...)
	r.cmd = exec.Command(clonegate, args...)
	r.cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig, "POD_NAMESPACE=")
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(30 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", r.name, r.log)
		}
	})
	return r
}

func (r *replica) get(addr, path string) (int, string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func (r *replica) ready() bool { code, _ := r.get(r.probe, "/readyz"); return code == http.StatusOK }

// poll waits for cond, failing the test (with what the replicas logged)
// after timeout or if a replica exits.
func poll(t *testing.T, what string, timeout time.Duration, cond func() (bool, error), replicas ...*replica) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		for _, r := range replicas {
			select {
			case <-r.exited:
				return false, fmt.Errorf("%s exited: %v", r.name, r.err)
			default:
			}
		}
		return cond()
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// servedCert is the leaf certificate the replica presents, verified against
// roots for 127.0.0.1 as the apiserver verifies it (nil roots: unverified).
func (r *replica) servedCert(roots *x509.CertPool) (*x509.Certificate, error) {
	conf := &tls.Config{ServerName: "127.0.0.1", RootCAs: roots, InsecureSkipVerify: roots == nil}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", r.addr, conf)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer is a log written by a process and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
