// Package e2e drives clonegate through a real kube-apiserver and the real
// kubectl: the webhooks are registered from config/webhook, served by the
// clonegate binary, and judged by what kubectl prints.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/internal/testenv"
)

// The CrossNamespaceVolumeDataSource gate decides what the apiserver drops
// before validating admission, so every rule is tried with it off and on.
const gateOn = "CrossNamespaceVolumeDataSource=true"

var (
	root      string // repository root
	clonegate string // the binary under test
	shared    = map[string]*env{}
)

// env is a control plane with clonegate serving its webhooks.
type env struct {
	*testenv.Cluster
	Server *testenv.Server
	Name   string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	if root, err = filepath.Abs("../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "clonegate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if clonegate, err = testenv.BuildClonegate(root, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for name, gates := range map[string]string{"gate-off": "", "gate-on": gateOn} {
		e, err := startEnv(name, testenv.Options{FeatureGates: gates})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer e.stop()
		shared[name] = e
	}
	return m.Run()
}

func startEnv(name string, o testenv.Options, serverArgs ...string) (*env, error) {
	o.Root = root
	c, err := testenv.Start(o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s, err := c.StartServer(context.Background(), clonegate, serverArgs...)
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &env{Cluster: c, Server: s, Name: name}, nil
}

func (e *env) stop() {
	if e.Server != nil {
		_ = e.Server.Stop()
	}
	_ = e.Cluster.Stop()
}

// newEnv starts a control plane of the test's own, for tests that stop or
// reconfigure the server.
func newEnv(t *testing.T, o testenv.Options, serverArgs ...string) *env {
	t.Helper()
	e, err := startEnv(t.Name(), o, serverArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && e.Server != nil {
			t.Logf("clonegate log:\n%s", e.Server.Log)
		}
		e.stop()
	})
	return e
}

// eachGate runs f against the shared control planes, gate off and on.
func eachGate(t *testing.T, f func(t *testing.T, e *env)) {
	for _, name := range []string{"gate-off", "gate-on"} {
		t.Run(name, func(t *testing.T) { f(t, shared[name]) })
	}
}

var nsCounter atomic.Int64

// namespace creates a fresh namespace for one test.
func (e *env) namespace(t *testing.T) string {
	t.Helper()
	// A DNS label: lowercase alphanumerics and '-', at most 63 characters.
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	ns := fmt.Sprintf("t%d-%s", nsCounter.Add(1), name)
	ns = strings.TrimRight(ns[:min(len(ns), 63)], "-")
	if r := e.Kubectl("", "create", "namespace", ns); r.Code != 0 {
		t.Fatalf("create namespace: %s", r.Output())
	}
	return ns
}

// apply runs kubectl apply -f - in namespace ns.
func (e *env) apply(t *testing.T, ns, manifest string, args ...string) testenv.Result {
	t.Helper()
	return e.Kubectl(manifest, append([]string{"apply", "-n", ns, "-f", "-"}, args...)...)
}

// sourceOpts describe a source claim and its volume.
type sourceOpts struct {
	request, capacity string // capacity empty: the claim stays Pending
	class             string // "-" for none, `""` for storageClassName ""
	driver            string // CSI driver of its volume; "-" for a non-CSI volume
	block             bool
}

// source creates a claim (Bound to a volume when capacity is set), as a
// provisioner would have left it, and the StorageClass it names.
func (e *env) source(t *testing.T, ns, name string, o sourceOpts) {
	t.Helper()
	ctx := context.Background()
	if o.class == "" {
		o.class = "csi-fast"
	}
	if o.driver == "" {
		o.driver = "fast.csi.example.com"
	}
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(o.request)}},
		},
	}
	switch o.class {
	case "-":
	case `""`:
		claim.Spec.StorageClassName = ptrTo("")
	default:
		claim.Spec.StorageClassName = &o.class
		e.class(t, o.class, "fast.csi.example.com")
	}
	if o.block {
		mode := corev1.PersistentVolumeBlock
		claim.Spec.VolumeMode = &mode
	}
	if o.capacity != "" {
		claim.Spec.VolumeName = ns + "-" + name
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: claim.Spec.VolumeName},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(o.capacity)},
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				ClaimRef:    &corev1.ObjectReference{Namespace: ns, Name: name},
				VolumeMode:  claim.Spec.VolumeMode,
			},
		}
		if o.class != "-" && o.class != `""` {
			pv.Spec.StorageClassName = o.class
		}
		if o.driver == "-" {
			pv.Spec.HostPath = &corev1.HostPathVolumeSource{Path: "/data"}
		} else {
			pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: o.driver, VolumeHandle: "vol-" + name}
		}
		if err := e.Client.Create(ctx, pv); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Client.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	if o.capacity != "" {
		claim.Status = corev1.PersistentVolumeClaimStatus{
			Phase:    corev1.ClaimBound,
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(o.capacity)},
		}
		if err := e.Client.Status().Update(ctx, claim); err != nil {
			t.Fatal(err)
		}
	}
}

// class creates a StorageClass unless it exists.
func (e *env) class(t *testing.T, name, provisioner string) {
	t.Helper()
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: provisioner}
	if err := e.Client.Create(context.Background(), sc); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
}

// claimYAML is a claim manifest; spec holds the lines under spec (indented
// by four spaces) besides accessModes.
func claimYAML(name, spec string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: %s
spec:
  accessModes: [ReadWriteOnce]
%s`, name, spec)
}

// cloneYAML is a clone of source requesting size, in class csi-fast.
func cloneYAML(name, source, size string) string {
	return claimYAML(name, fmt.Sprintf(`  storageClassName: csi-fast
  dataSource:
    kind: PersistentVolumeClaim
    name: %s
  resources:
    requests:
      storage: %s
`, source, size))
}

// get reads a claim as stored.
func (e *env) get(t *testing.T, ns, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	claim := &corev1.PersistentVolumeClaim{}
	if err := e.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, claim); err != nil {
		t.Fatal(err)
	}
	return claim
}

// expect checks a kubectl result: its exit code and that its output holds
// every want (and none of the unwanted, prefixed with "!").
func expect(t *testing.T, r testenv.Result, code int, wants ...string) {
	t.Helper()
	if r.Code != code {
		t.Errorf("kubectl exit code %d, want %d; output:\n%s", r.Code, code, r.Output())
	}
	for _, w := range wants {
		if not, ok := strings.CutPrefix(w, "!"); ok {
			if strings.Contains(r.Output(), not) {
				t.Errorf("kubectl output has %q; output:\n%s", not, r.Output())
			}
		} else if !strings.Contains(r.Output(), w) {
			t.Errorf("kubectl output lacks %q; output:\n%s", w, r.Output())
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
