package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/internal/testenv"
)

// The pipeline's components, looked for in CLONEGATE_PIPELINE_BIN, KUBEBUILDER_ASSETS and bin/.
var components = []string{"kube-controller-manager", "csi-provisioner", "snapshot-controller", "csi-snapshotter"}

// snapshotClient is the module holding the snapshot CRDs, at the version the snapshotter is built from.
const snapshotClient = "github.com/kubernetes-csi/external-snapshotter/client/v8@v8.7.0"

var snapshotCRDs = []string{
	"snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
	"snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
	"snapshot.storage.k8s.io_volumesnapshots.yaml",
	// Without the group snapshot CRDs snapshot-controller v8.7.0 waits up to 30s before its first snapshot.
	"groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses.yaml",
	"groupsnapshot.storage.k8s.io_volumegroupsnapshotcontents.yaml",
	"groupsnapshot.storage.k8s.io_volumegroupsnapshots.yaml",
}

// startPipeline starts etcd and kube-apiserver (envtest, clonegate's webhooks registered),
// clonegate serve, the test CSI driver, kube-controller-manager with the volume controllers,
// external-provisioner, snapshot-controller and csi-snapshotter; all stop when t ends. Gate "on"
// turns CrossNamespaceVolumeDataSource on in every component that has it.
func startPipeline(t *testing.T, gate string) *cluster {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bins := map[string]string{}
	var missing []string
	for _, name := range components {
		if bins[name] = findBinary(root, name); bins[name] == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Skipf("the pipeline's binaries %s are not in KUBEBUILDER_ASSETS or bin/: build them first (issue 10: the real cloning pipeline)", strings.Join(missing, ", "))
	}
	crdDir, err := moduleDir(snapshotClient)
	if err != nil {
		t.Fatalf("the snapshot CRDs: %v", err)
	}
	var crds []string
	for _, f := range snapshotCRDs {
		crds = append(crds, filepath.Join(crdDir, "config", "crd", f))
	}
	var gates string
	if gate == "on" {
		gates = "CrossNamespaceVolumeDataSource=true"
		// external-provisioner watches ReferenceGrants when the gate is on, and waits for the API.
		crds = append(crds, filepath.Join(root, "test", "e2e", "testdata", "crds", "gateway.networking.k8s.io_referencegrants.yaml"))
	}

	// Not t.TempDir: the components' logs are kept when the test fails.
	dir, err := os.MkdirTemp("", "clonegate-matrix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the pipeline's logs are in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	c, err := testenv.Start(testenv.Options{Root: root, FeatureGates: gates, CRDPaths: crds, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })

	clonegate, err := testenv.BuildClonegate(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	driver := filepath.Join(dir, "csidriver")
	if out, err := exec.Command("go", "build", "-o", driver, filepath.Join(root, "test", "csidriver", "cmd", "csidriver")).CombinedOutput(); err != nil {
		t.Fatalf("building the CSI driver: %v\n%s", err, out)
	}

	// clonegate serves the webhooks envtest registered, logging JSON into a file the rows read.
	w := c.Env.WebhookInstallOptions
	probe := freeAddr(t)
	clonegateLog := filepath.Join(dir, "clonegate.log")
	env := []string{"KUBECONFIG=" + c.Kubeconfig}
	start(t, dir, env, clonegate, "serve", "--cert-dir", w.LocalServingCertDir, "--host", w.LocalServingHost,
		"--port", fmt.Sprint(w.LocalServingPort), "--health-probe-bind-address", probe,
		"--metrics-bind-address", freeAddr(t), "--shutdown-delay", "0s", "--log-format", "json")
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, minute, true, func(context.Context) (bool, error) {
		resp, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		t.Fatalf("clonegate did not become ready: %v\n%s", err, tail(clonegateLog))
	}

	sock := filepath.Join(dir, "csi.sock")
	start(t, dir, env, driver, "--endpoint", "unix://"+sock, "--state-dir", filepath.Join(dir, "volumes"), "--node-id", node)
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, err := os.Stat(sock)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("the CSI driver did not listen on %s", sock)
	}
	var fg []string
	if gates != "" {
		fg = []string{"--feature-gates=" + gates}
	}
	start(t, dir, env, bins["kube-controller-manager"], append([]string{"--kubeconfig", c.Kubeconfig,
		"--controllers=persistentvolume-binder-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller",
		"--leader-elect=false", "--use-service-account-credentials=false", "--secure-port=0"}, fg...)...)
	// The sidecars' default of 5 requests a second is for a cluster's worth of claims arriving over
	// time; the matrix creates all of them at once.
	qps := []string{"--kube-api-qps=100", "--kube-api-burst=200"}
	start(t, dir, env, bins["csi-provisioner"], append(append([]string{"--kubeconfig", c.Kubeconfig, "--csi-address", sock, "--leader-election=false"}, qps...), fg...)...)
	start(t, dir, env, bins["snapshot-controller"], append([]string{"--kubeconfig", c.Kubeconfig, "--leader-election=false"}, qps...)...)
	start(t, dir, env, bins["csi-snapshotter"], append([]string{"--kubeconfig", c.Kubeconfig, "--csi-address", sock, "--leader-election=false"}, qps...)...)

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = admissionv1.AddToScheme(scheme)
	cfg := rest.CopyConfig(c.Env.Config)
	cfg.QPS, cfg.Burst = 500, 1000 // every row polls at once
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{kubectl: c.Kubectl, client: cl, gate: gate, log: func() string {
		b, _ := os.ReadFile(clonegateLog)
		return string(b)
	}}
}

// start runs a component with its output in dir/<name>.log, and stops it when t ends.
func start(t *testing.T, dir string, env []string, bin string, args ...string) {
	t.Helper()
	logFile, err := os.Create(filepath.Join(dir, filepath.Base(bin)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
	})
}

func findBinary(root, name string) string {
	for _, dir := range []string{os.Getenv("CLONEGATE_PIPELINE_BIN"), os.Getenv("KUBEBUILDER_ASSETS"), filepath.Join(root, "bin")} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, name); isFile(p) {
			return p
		}
	}
	return ""
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// moduleDir returns where the Go module cache holds mod (path@version), fetching it from the
// module proxy when needed; run outside the repository so its go.mod is left alone.
func moduleDir(mod string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", mod, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s %v", mod, m.Error, err)
	}
	return m.Dir, nil
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
