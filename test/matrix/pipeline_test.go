package matrix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/internal/testenv"
)

// PROTOTYPE: a hand-started pipeline from /tmp/proto/bin, until internal/pipeline lands.
func startPipeline(t *testing.T, gate string) *cluster {
	t.Helper()
	root, _ := filepath.Abs("../..")
	bin := "/tmp/proto/bin"
	crdDir := "/root/go/pkg/mod/github.com/kubernetes-csi/external-snapshotter/client/v8@v8.7.0/config/crd"
	var crds []string
	for _, f := range []string{"groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses.yaml", "groupsnapshot.storage.k8s.io_volumegroupsnapshotcontents.yaml", "groupsnapshot.storage.k8s.io_volumegroupsnapshots.yaml", "snapshot.storage.k8s.io_volumesnapshotclasses.yaml", "snapshot.storage.k8s.io_volumesnapshotcontents.yaml", "snapshot.storage.k8s.io_volumesnapshots.yaml"} {
		crds = append(crds, filepath.Join(crdDir, f))
	}
	gates := ""
	if gate == "on" {
		gates = "CrossNamespaceVolumeDataSource=true"
		crds = append(crds, filepath.Join(root, "test/e2e/testdata/crds/gateway.networking.k8s.io_referencegrants.yaml"))
	}
	dir := t.TempDir()
	c, err := testenv.Start(testenv.Options{Root: root, FeatureGates: gates, CRDPaths: crds, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	cg, err := testenv.BuildClonegate(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := c.StartServer(context.Background(), cg, "--log-format=json")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })

	drv := filepath.Join(dir, "csidriver")
	if out, err := exec.Command("go", "build", "-o", drv, filepath.Join(root, "test/csidriver/cmd/csidriver")).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	sock := filepath.Join(dir, "csi.sock")
	fg := []string{}
	if gates != "" {
		fg = []string{"--feature-gates=" + gates}
	}
	procs := [][]string{
		{drv, "--endpoint", "unix://" + sock, "--state-dir", filepath.Join(dir, "state"), "--node-id", node},
		append([]string{filepath.Join(bin, "kube-controller-manager"), "--kubeconfig", c.Kubeconfig,
			"--controllers=persistentvolume-binder-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller",
			"--leader-elect=false", "--use-service-account-credentials=false", "--secure-port=0"}, fg...),
		append([]string{filepath.Join(bin, "csi-provisioner"), "--kubeconfig", c.Kubeconfig, "--csi-address", sock, "--leader-election=false"}, fg...),
		{filepath.Join(bin, "snapshot-controller"), "--kubeconfig", c.Kubeconfig, "--leader-election=false"},
		{filepath.Join(bin, "csi-snapshotter"), "--kubeconfig", c.Kubeconfig, "--csi-address", sock, "--leader-election=false"},
	}
	for _, p := range procs {
		cmd := exec.Command(p[0], p[1:]...)
		logf, _ := os.Create(filepath.Join(dir, filepath.Base(p[0])+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if p[0] == drv {
			for i := 0; i < 100; i++ {
				if _, err := os.Stat(sock); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	t.Logf("pipeline logs in %s", dir)
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = admissionv1.AddToScheme(scheme)
	cfg := rest.CopyConfig(c.Env.Config)
	cfg.QPS, cfg.Burst = 500, 1000 // every row polls at once
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{kubectl: c.Kubectl, client: cl, log: func() string { return srv.Log.String() }, gate: gate}
}

var _ = fmt.Sprint
