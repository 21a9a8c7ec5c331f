// Package testenv starts a real control plane (etcd + kube-apiserver through
// controller-runtime's envtest) with clonegate's webhooks registered from
// config/webhook, and runs the clonegate binary as their server. The e2e
// tests and `make run` both stand on it.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Options shape the control plane.
type Options struct {
	Root         string   // repository root (holds config/ and bin/)
	FeatureGates string   // kube-apiserver --feature-gates, e.g. CrossNamespaceVolumeDataSource=true
	WebhookPaths []string // registrations to install; config/webhook when empty
	NoWebhooks   bool     // install no registration: Kubernetes alone, without clonegate
	CRDPaths     []string // CustomResourceDefinitions to install (snapshot CRDs, say)
	Dir          string   // where to write the kubeconfig; a temp dir when empty
	// APIServerFlags are extra kube-apiserver flags, name without dashes
	// (endpoint-reconciler-type: none, say).
	APIServerFlags map[string]string
	// APIServerCertDir keeps kube-apiserver's serving certificate in a
	// directory of the caller's, so that it can be stopped and started again
	// (Env.ControlPlane.APIServer) with the same certificate, and kubeconfigs
	// still trust it; envtest makes a new one in a temp dir otherwise.
	APIServerCertDir string
}

// Cluster is a running control plane with clonegate's webhooks registered.
type Cluster struct {
	Env        *envtest.Environment
	Client     client.Client
	Kubeconfig string // path of an admin kubeconfig
	KubectlBin string
	Root       string
}

// Start brings up etcd and kube-apiserver from KUBEBUILDER_ASSETS.
func Start(o Options) (*Cluster, error) {
	log.SetLogger(logr.Discard()) // envtest's own chatter is not what the tests are about
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run through make (make test / make run), which builds the control plane into bin/")
	}
	if len(o.WebhookPaths) == 0 && !o.NoWebhooks {
		o.WebhookPaths = []string{filepath.Join(o.Root, "config", "webhook")}
	}
	env := &envtest.Environment{
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: o.WebhookPaths, LocalServingHost: "127.0.0.1"},
		CRDInstallOptions:     envtest.CRDInstallOptions{Paths: o.CRDPaths, ErrorIfPathMissing: true},
		// envtest's 20s default is too short for a 2-core CI machine that
		// starts several control planes at once.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if o.FeatureGates != "" {
		env.ControlPlane.GetAPIServer().Configure().Append("feature-gates", o.FeatureGates)
	}
	for name, value := range o.APIServerFlags {
		env.ControlPlane.GetAPIServer().Configure().Set(name, value)
	}
	if o.APIServerCertDir != "" {
		env.ControlPlane.GetAPIServer().CertDir = o.APIServerCertDir
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	c := &Cluster{Env: env, Root: o.Root, KubectlBin: filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")}
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = storagev1.AddToScheme(scheme)
	if c.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "clonegate-env-"); err != nil {
			return nil, errors.Join(err, c.Stop())
		}
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

// Stop tears the control plane down.
func (c *Cluster) Stop() error { return c.Env.Stop() }

// Result is what a command printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Output is stdout and stderr together, as a person at the terminal sees it.
func (r Result) Output() string { return r.Stdout + r.Stderr }

// Kubectl runs the real kubectl against the cluster, with stdin as input.
func (c *Cluster) Kubectl(stdin string, args ...string) Result {
	cmd := exec.Command(c.KubectlBin, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	case err != nil:
		r.Code, r.Stderr = -1, r.Stderr+err.Error()
	}
	return r
}

// Server is a running `clonegate serve`.
type Server struct {
	Cmd         *exec.Cmd
	ProbeAddr   string
	MetricsAddr string
	Log         *LogBuffer
	exited      chan struct{}
	waitErr     error
}

// LogBuffer holds a process's output; safe to read while the process writes.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes is a copy of the output so far.
func (b *LogBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *LogBuffer) String() string { return string(b.Bytes()) }

// StartServer runs the clonegate binary as the webhooks' server, on the
// address and certificate envtest registered, and waits until it is ready.
func (c *Cluster) StartServer(ctx context.Context, bin string, extraArgs ...string) (*Server, error) {
	w := c.Env.WebhookInstallOptions
	s := &Server{ProbeAddr: freeAddr(), MetricsAddr: freeAddr(), Log: &LogBuffer{}, exited: make(chan struct{})}
	args := append([]string{"serve",
		"--cert-dir", w.LocalServingCertDir,
		"--host", w.LocalServingHost,
		"--port", fmt.Sprint(w.LocalServingPort),
		"--health-probe-bind-address", s.ProbeAddr,
		"--metrics-bind-address", s.MetricsAddr,
		"--shutdown-delay", "0s",
	}, extraArgs...)
	s.Cmd = exec.Command(bin, args...)
	s.Cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	s.Cmd.Stdout, s.Cmd.Stderr = s.Log, s.Log
	if err := s.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.waitErr = s.Cmd.Wait(); close(s.exited) }()
	if err := s.WaitReady(ctx, true); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("clonegate did not become ready: %w\n%s", err, s.Log)
	}
	return s, nil
}

// Ready reports whether /readyz answers 200.
func (s *Server) Ready() bool {
	resp, err := http.Get("http://" + s.ProbeAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitReady polls /readyz until it says want.
func (s *Server) WaitReady(ctx context.Context, want bool) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		select {
		case <-s.exited:
			return false, fmt.Errorf("clonegate exited: %v", s.waitErr)
		default:
		}
		return s.Ready() == want, nil
	})
}

// Stop sends SIGTERM and waits for the process to exit, returning its error.
func (s *Server) Stop() error {
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.waitErr
	case <-time.After(30 * time.Second):
		_ = s.Cmd.Process.Kill()
		<-s.exited
		return errors.New("clonegate did not exit within 30s of SIGTERM")
	}
}

// RSS is the resident set size of the process in bytes, from /proc.
func (s *Server) RSS() (int64, error) { return s.status("VmRSS:") }

// PeakRSS is the largest resident set size the process has had, in bytes:
// what a memory limit must leave room for.
func (s *Server) PeakRSS() (int64, error) { return s.status("VmHWM:") }

// status reads a size in kB from /proc/<pid>/status.
func (s *Server) status(field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, s.Cmd.Process.Pid)
}

// Exited is closed when the process ends.
func (s *Server) Exited() <-chan struct{} { return s.exited }

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// BuildClonegate builds the clonegate binary from the repository at root
// into dir and returns its path: the tests run the real binary, flags and all.
func BuildClonegate(root, dir string) (string, error) {
	bin := filepath.Join(dir, "clonegate")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building clonegate: %w", err)
	}
	return bin, nil
}
