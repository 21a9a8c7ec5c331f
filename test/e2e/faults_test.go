package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/clonegate/clonegate/internal/testenv"
)

// SIGTERM while reviews flow: /readyz turns false at once, reviews keep
// being answered through --shutdown-delay (the time endpoints take to drop
// the pod), in-flight ones finish, and the process exits 0 well within its
// grace period. The load stops sending a moment after it sees not-ready, as
// a Service would once the endpoint is gone.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	const delay = 3 * time.Second
	e := newEnv(t, testenv.Options{}, "--shutdown-delay", delay.String())
	ns := e.namespace(t)
	e.source(t, ns, "src", sourceOpts{request: "5Gi", capacity: "5Gi"})
	l := startLoad(t, e, ns, "src", 4, 0)
	waitFor(t, "reviews to flow", func() bool { return l.total() >= 50 })

	server := e.Server
	e.Server = nil // this test stops it
	sent := time.Now()
	atTERM := l.total()
	if err := server.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var notReady time.Duration
	if err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, delay, true, func(context.Context) (bool, error) {
		return !server.Ready(), nil
	}); err != nil {
		t.Fatalf("/readyz still ready %v after SIGTERM", delay)
	}
	notReady = time.Since(sent)
	// Endpoints take a moment to drop a pod that is not ready: keep sending
	// for a second, well inside --shutdown-delay.
	atNotReady := l.total()
	waitFor(t, "a second of reviews after not-ready", func() bool { return time.Since(sent) > notReady+time.Second })
	l.finish(t)
	afterTERM := l.total() - atTERM
	select {
	case <-server.Exited():
	case <-time.After(delay + 30*time.Second):
		t.Fatalf("clonegate did not exit within %v of SIGTERM", delay+30*time.Second)
	}
	exited := time.Since(sent)
	if code := server.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0; log:\n%s", code, server.Log)
	}
	t.Logf("FIGURES sigterm: not-ready after %v, %d reviews answered after SIGTERM (%d after not-ready), exit after %v (shutdown-delay %v), %d failed reviews",
		notReady.Round(time.Millisecond), afterTERM, l.total()-atNotReady, exited.Round(time.Millisecond), delay, l.failed.Load())
	if notReady > 500*time.Millisecond {
		t.Errorf("not-ready took %v after SIGTERM, want at once", notReady)
	}
	if exited < delay {
		t.Errorf("exited after %v, before --shutdown-delay %v was over", exited, delay)
	}
	if exited > delay+10*time.Second {
		t.Errorf("exited after %v, want within shutdown-delay + 10s", exited)
	}
}

// The serving certificate is replaced on disk, both files at once (the
// Secret-volume way: a ..data symlink swapped to a new directory), with a new
// certificate of the same CA, while reviews flow: not one fails, and the new
// certificate is served without a restart.
func TestFaultCertRotatedUnderLoad(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	ns := e.namespace(t)
	e.source(t, ns, "src", sourceOpts{request: "5Gi", capacity: "5Gi"})
	ca := newCA(t)
	dir := e.Env.WebhookInstallOptions.LocalServingCertDir
	addr := net.JoinHostPort(e.Env.WebhookInstallOptions.LocalServingHost, strconv.Itoa(e.Env.WebhookInstallOptions.LocalServingPort))

	// Setup, no load yet: serve a certificate of our CA and trust it.
	first := ca.serve(t, dir, "v1")
	waitFor(t, "the first certificate to be served", func() bool { return servedSerial(addr) == first })
	bundle := base64.StdEncoding.EncodeToString(ca.pem)
	for _, kind := range []string{"mutatingwebhookconfiguration/clonegate-mutating", "validatingwebhookconfiguration/clonegate-validating"} {
		expect(t, e.Kubectl("", "patch", kind, "--type=json", "-p",
			`[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"`+bundle+`"}]`), 0, "patched")
	}
	waitFor(t, "reviews to pass with the new caBundle", func() bool {
		probe := &load{}
		probe.review(e, ns, "src", "probe", true)
		return probe.denied.Load() == 1
	})

	l := startLoad(t, e, ns, "src", 4, 0)
	waitFor(t, "reviews to flow", func() bool { return l.total() >= 50 })
	before := l.total()
	rotated := time.Now()
	second := ca.serve(t, dir, "v2")
	waitFor(t, "the rotated certificate to be served", func() bool { return servedSerial(addr) == second })
	took := time.Since(rotated)
	during := l.total() - before
	waitFor(t, "reviews with the new certificate", func() bool { return l.total() >= before+during+50 })
	l.finish(t)
	t.Logf("FIGURES rotation: new certificate served %v after the swap, %d reviews during it, %d failed reviews",
		took.Round(time.Millisecond), during, l.failed.Load())
}

// kube-apiserver stops and starts again on the same port, etcd and
// certificate under a running clonegate: clonegate reconnects, its claim
// index resyncs, a source created right after the restart is found, and a
// source changed after it is judged by its new size (no stale verdict).
func TestFaultAPIServerRestarted(t *testing.T) {
	e := newEnv(t, testenv.Options{APIServerCertDir: t.TempDir()})
	ns := e.namespace(t)
	e.source(t, ns, "before", sourceOpts{request: "1Gi", capacity: "1Gi"})
	expect(t, e.apply(t, ns, cloneYAML("c0", "before", "2Gi"), "--dry-run=server"), 0, "created (server dry run)")

	api := e.Env.ControlPlane.APIServer
	url := api.SecureServing.URL("https", "").String()
	// Killed, as a crashed or evicted apiserver is: with clonegate's watches
	// open, a SIGTERM'd kube-apiserver takes its full minute to drain.
	killAPIServer(t, api.CertDir)
	if err := api.Stop(); err != nil {
		t.Fatal(err)
	}
	// While it is down clonegate keeps running and keeps its index.
	select {
	case <-e.Server.Exited():
		t.Fatalf("clonegate exited when kube-apiserver stopped:\n%s", e.Server.Log)
	default:
	}
	if err := api.Start(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if now := api.SecureServing.URL("https", "").String(); now != url {
		t.Fatalf("kube-apiserver came back on %s, not %s", now, url)
	}

	// Created right after the restart, before clonegate's watch is back:
	// found by the live read on a miss, not reported missing.
	e.source(t, ns, "after", sourceOpts{request: "5Gi", capacity: "5Gi"})
	expect(t, e.apply(t, ns, cloneYAML("c1", "after", "1Gi"), "--dry-run=server"), 1,
		validateDenied, "must be at least 5Gi", "!does not exist")

	// Its volume grown after the restart: once the watch is back, the new size counts.
	src := e.get(t, ns, "before")
	src.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}
	if err := e.Client.Status().Update(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the expanded source to be judged by its new size", func() bool {
		r := e.apply(t, ns, cloneYAML("c2", "before", "2Gi"), "--dry-run=server")
		return r.Code == 0 && strings.Contains(r.Output(), "must be at least 10Gi, the capacity of source")
	})
	t.Logf("FIGURES apiserver restart: a change made after the restart judged by clonegate %v after kube-apiserver was back", time.Since(restarted).Round(time.Millisecond))
	if !e.Server.Ready() {
		t.Errorf("clonegate is not ready after kube-apiserver came back")
	}
}

// A source claim being deleted (held by a finalizer) is judged as such from
// the moment the delete returns: never a wrong allow.
func TestFaultSourceBeingDeleted(t *testing.T) {
	e := shared["gate-off"]
	ns := e.namespace(t)
	for i := range 5 {
		name := fmt.Sprintf("src-%d", i)
		e.source(t, ns, name, sourceOpts{request: "1Gi", capacity: "1Gi"})
		expect(t, e.Kubectl("", "patch", "pvc", "-n", ns, name, "--type=merge", "-p", `{"metadata":{"finalizers":["example.com/hold"]}}`), 0)
		expect(t, e.Kubectl("", "delete", "pvc", "-n", ns, name, "--wait=false"), 0)
		// At once, no waiting for clonegate to see the delete.
		expect(t, e.apply(t, ns, cloneYAML(fmt.Sprintf("clone-%d", i), name, "1Gi")), 1, validateDenied, "is being deleted")
	}
}

// killAPIServer sends SIGKILL to the kube-apiserver this test started: the
// one whose --cert-dir is the test's own directory.
func killAPIServer(t *testing.T, certDir string) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range entries {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) == "kube-apiserver" && slices.Contains(args, "--cert-dir="+certDir) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no kube-apiserver with --cert-dir=%s", certDir)
}

// waitFor polls cond until it holds, for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// testCA issues serving certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clonegate-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

var serials atomic.Int64

// issue returns a PEM certificate and key for usage (server or client auth).
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte, serialNo string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn := big.NewInt(time.Now().UnixNano() + serials.Add(1))
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), sn.String()
}

// serve writes a new serving certificate into dir as a Secret volume holds
// it — tls.crt and tls.key link through ..data to a versioned directory —
// and swaps ..data in one rename, so both files change together. It returns
// the certificate's serial number.
func (ca *testCA) serve(t *testing.T, dir, version string) string {
	t.Helper()
	certPEM, keyPEM, sn := ca.issue(t, "clonegate-webhook", x509.ExtKeyUsageServerAuth)
	vdir := filepath.Join(dir, ".."+version)
	if err := os.MkdirAll(vdir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(vdir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(".."+version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		if target, _ := os.Readlink(filepath.Join(dir, name)); target == filepath.Join("..data", name) {
			continue
		}
		link := filepath.Join(dir, name+".tmp")
		_ = os.Remove(link)
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(link, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return sn
}

// servedSerial is the serial number of the certificate served at addr.
func servedSerial(addr string) string {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return ""
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}
