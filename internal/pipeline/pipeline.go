// Package pipeline starts the real cloning pipeline as plain processes: etcd
// and kube-apiserver (internal/testenv), kube-controller-manager with only the
// volume controllers, the snapshot CRDs, snapshot-controller, the project's
// CSI test driver (test/csidriver) and the external-provisioner and
// csi-snapshotter sidecars on its unix socket; clonegate registered and
// serving, or not at all. `make run`, the pipeline smoke test and the
// agreement matrix stand on it.
//
// Every component runs as its own user, named like its upstream
// ServiceAccount and bound by the upstream RBAC files in upstream/rbac, not
// as system:masters: a permission the real deployment lacks fails here too.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/clonegate/clonegate/internal/testenv"
)

const (
	// DriverName is the CSI driver's name: the provisioner of StorageClass and
	// the driver of VolumeSnapshotClass.
	DriverName = "csi.clonegate.dev"
	// StorageClass is the default StorageClass: the driver, Immediate binding,
	// expandable.
	StorageClass = "csi-clonegate"
	// SnapshotClass is the default VolumeSnapshotClass, for the driver.
	SnapshotClass = "csi-clonegate"
	// PathAttribute is the key of the volume's directory in the PV's
	// spec.csi.volumeAttributes: write into it to put data in a volume.
	PathAttribute = "path"
	// NodeName is the node the driver reports (NodeGetInfo).
	NodeName = "clonegate-node"
)

// Options shape the pipeline.
type Options struct {
	Root string // repository root (holds config/, bin/, test/csidriver)
	Dir  string // logs, kubeconfigs, the driver's socket and volumes; required
	// Clonegate is the clonegate binary, registered from config/webhook and
	// serving; empty runs Kubernetes alone, with no webhook registered.
	Clonegate     string
	ClonegateArgs []string // extra `clonegate serve` flags
	// FeatureGates go to kube-apiserver, kube-controller-manager and
	// csi-provisioner alike (CrossNamespaceVolumeDataSource=true, say).
	FeatureGates string
	CRDPaths     []string // more CRDs beside the snapshot ones (ReferenceGrant, say)
	// Bin holds kube-controller-manager, csi-provisioner, snapshot-controller
	// and csi-snapshotter; bin/pipeline under Root when empty (make tools).
	Bin string
	// Driver is the CSI driver binary; built from test/csidriver/cmd/csidriver
	// into Dir when empty.
	Driver string
}

// Pipeline is a running pipeline. Cluster is its control plane (kubectl, the
// admin kubeconfig); Server is clonegate, nil when not registered.
type Pipeline struct {
	*testenv.Cluster
	Server *testenv.Server
	Dir    string
	procs  []*process
}

// Start brings the pipeline up and returns once the default classes exist and
// every process has started; the controllers pick up what is created from
// then on when their informers sync, within a second or two. Stop it, even on
// the caller's error paths.
func Start(ctx context.Context, o Options) (p *Pipeline, err error) {
	if o.Dir == "" {
		return nil, errors.New("pipeline: Options.Dir is required")
	}
	if o.Root, err = filepath.Abs(o.Root); err != nil {
		return nil, err
	}
	if o.Bin == "" {
		o.Bin = filepath.Join(o.Root, "bin", "pipeline")
	}
	for _, name := range []string{"kube-controller-manager", "csi-provisioner", "snapshot-controller", "csi-snapshotter"} {
		if _, err := os.Stat(filepath.Join(o.Bin, name)); err != nil {
			return nil, fmt.Errorf("pipeline: %s is missing from %s: run make tools, which builds it", name, o.Bin)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	driver := o.Driver
	if driver == "" {
		// Built while the control plane starts; waited for below.
		driver = filepath.Join(o.Dir, "csidriver")
	}
	built := make(chan error, 1)
	go func() {
		if o.Driver != "" {
			built <- nil
			return
		}
		built <- buildDriver(o.Root, driver)
	}()

	crds, _ := filepath.Glob(filepath.Join(o.Root, "internal", "pipeline", "upstream", "crd", "*.yaml"))
	cluster, err := testenv.Start(testenv.Options{
		Root:         o.Root,
		Dir:          o.Dir,
		NoWebhooks:   o.Clonegate == "",
		FeatureGates: o.FeatureGates,
		CRDPaths:     append(crds, o.CRDPaths...),
		// The apiserver's endpoint reconciler refuses 127.0.0.1 as the
		// kubernetes Service's endpoint; nothing here needs that Service.
		APIServerFlags: map[string]string{"endpoint-reconciler-type": "none"},
	})
	if err != nil {
		<-built
		return nil, err
	}
	p = &Pipeline{Cluster: cluster, Dir: o.Dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Stop())
		}
	}()
	if err := <-built; err != nil {
		return p, err
	}

	// RBAC first, so that no component starts with a forbidden.
	rbac, _ := filepath.Glob(filepath.Join(o.Root, "internal", "pipeline", "upstream", "rbac", "*.yaml"))
	args := []string{"apply", "-f", filepath.Join(o.Root, "internal", "pipeline", "kube-controller-manager-rbac.yaml")}
	for _, f := range rbac {
		args = append(args, "-f", f)
	}
	if r := cluster.Kubectl("", args...); r.Code != 0 {
		return p, fmt.Errorf("pipeline: applying RBAC: %s", r.Output())
	}
	if strings.Contains(o.FeatureGates, "CrossNamespaceVolumeDataSource=true") {
		// With the gate on, csi-provisioner watches ReferenceGrants and provisions nothing until it
		// may list them: the rule upstream's RBAC file leaves commented out for this case.
		if r := cluster.Kubectl(referenceGrantRBAC, "apply", "-f", "-"); r.Code != 0 {
			return p, fmt.Errorf("pipeline: applying the ReferenceGrant RBAC: %s", r.Output())
		}
	}
	if r := cluster.Kubectl(classes, "apply", "-f", "-"); r.Code != 0 {
		return p, fmt.Errorf("pipeline: creating the default classes: %s", r.Output())
	}

	if o.Clonegate != "" {
		if p.Server, err = cluster.StartServer(ctx, o.Clonegate, o.ClonegateArgs...); err != nil {
			return p, err
		}
	}

	var gates []string
	if o.FeatureGates != "" {
		gates = []string{"--feature-gates=" + o.FeatureGates}
	}
	socket := filepath.Join(o.Dir, "csi.sock")
	_ = os.Remove(socket) // a stale socket from a run that was killed
	if err := p.start("csidriver", driver, "--endpoint", "unix://"+socket,
		"--state-dir", filepath.Join(o.Dir, "volumes"), "--driver-name", DriverName, "--node-id", NodeName); err != nil {
		return p, err
	}
	// The sidecars give up when the socket is not there yet.
	if err := p.poll(ctx, "the CSI driver's socket", func() bool { _, err := os.Stat(socket); return err == nil }); err != nil {
		return p, err
	}

	// The sidecars' default of 5 API requests a second suits claims that arrive over time; the
	// agreement matrix creates about fifty at once, and events came late at that rate.
	qps := []string{"--kube-api-qps=100", "--kube-api-burst=200"}
	components := []struct {
		name string
		user envtest.User
		args []string
	}{
		{"kube-controller-manager", envtest.User{Name: "system:kube-controller-manager"}, append([]string{
			"--controllers=persistentvolume-binder-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller",
			"--leader-elect=false", "--use-service-account-credentials=false", "--secure-port=0"}, gates...)},
		{"snapshot-controller", serviceAccount("kube-system", "snapshot-controller"), append([]string{"--leader-election=false"}, qps...)},
		{"csi-provisioner", serviceAccount("default", "csi-provisioner"), append(append([]string{
			"--csi-address=" + socket, "--leader-election=false"}, qps...), gates...)},
		{"csi-snapshotter", serviceAccount("default", "csi-snapshotter"), append([]string{
			"--csi-address=" + socket, "--leader-election=false"}, qps...)},
	}
	for _, c := range components {
		kubeconfig, err := p.kubeconfig(c.name, c.user)
		if err != nil {
			return p, err
		}
		if err := p.start(c.name, filepath.Join(o.Bin, c.name), append([]string{"--kubeconfig=" + kubeconfig}, c.args...)...); err != nil {
			return p, err
		}
	}
	return p, nil
}

// classes are the default StorageClass and VolumeSnapshotClass.
const classes = `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: ` + StorageClass + `
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: ` + DriverName + `
volumeBindingMode: Immediate
allowVolumeExpansion: true
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: ` + SnapshotClass + `
  annotations: {snapshot.storage.kubernetes.io/is-default-class: "true"}
driver: ` + DriverName + `
deletionPolicy: Delete
`

// referenceGrantRBAC lets csi-provisioner read ReferenceGrants, as upstream/rbac/csi-provisioner.yaml
// says to when the CrossNamespaceVolumeDataSource gate is on.
const referenceGrantRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: external-provisioner-referencegrants}
rules:
  - apiGroups: ["gateway.networking.k8s.io"]
    resources: ["referencegrants"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: csi-provisioner-referencegrants}
subjects:
  - {kind: ServiceAccount, name: csi-provisioner, namespace: default}
roleRef: {kind: ClusterRole, name: external-provisioner-referencegrants, apiGroup: rbac.authorization.k8s.io}
`

func serviceAccount(namespace, name string) envtest.User {
	return envtest.User{
		Name:   "system:serviceaccount:" + namespace + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace},
	}
}

// kubeconfig writes a kubeconfig for user into Dir and returns its path.
func (p *Pipeline) kubeconfig(name string, user envtest.User) (string, error) {
	u, err := p.Env.AddUser(user, p.Env.Config)
	if err != nil {
		return "", fmt.Errorf("pipeline: a user for %s: %w", name, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(p.Dir, name+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// VolumePath is the directory holding the data of the volume bound to the
// claim: the PV's spec.csi.volumeAttributes.path. Empty, with no error, while
// the claim is not bound.
func (p *Pipeline) VolumePath(ctx context.Context, namespace, claim string) (string, error) {
	pvc := &corev1.PersistentVolumeClaim{}
	if err := p.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: claim}, pvc); err != nil {
		return "", err
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return "", nil
	}
	pv := &corev1.PersistentVolume{}
	if err := p.Client.Get(ctx, types.NamespacedName{Name: pvc.Spec.VolumeName}, pv); err != nil {
		return "", err
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.VolumeAttributes[PathAttribute] == "" {
		return "", fmt.Errorf("volume %s of claim %s/%s has no spec.csi.volumeAttributes.%s: not provisioned by %s",
			pv.Name, namespace, claim, PathAttribute, DriverName)
	}
	return pv.Spec.CSI.VolumeAttributes[PathAttribute], nil
}

// WaitBound polls until the claim is Bound and returns its volume's directory.
func (p *Pipeline) WaitBound(ctx context.Context, namespace, claim string, timeout time.Duration) (string, error) {
	var path string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var err error
		path, err = p.VolumePath(ctx, namespace, claim)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return path != "", err
	})
	if err != nil {
		return "", fmt.Errorf("claim %s/%s is not bound: %w (logs in %s)", namespace, claim, err, p.Dir)
	}
	return path, nil
}

// Log is the path of a component's log: csidriver, kube-controller-manager,
// snapshot-controller, csi-provisioner or csi-snapshotter.
func (p *Pipeline) Log(component string) string { return filepath.Join(p.Dir, component+".log") }

// Stop stops every process in the reverse order of their start, then
// clonegate, kube-apiserver and etcd.
func (p *Pipeline) Stop() error {
	var errs []error
	for i := len(p.procs) - 1; i >= 0; i-- {
		errs = append(errs, p.procs[i].stop())
	}
	p.procs = nil
	if p.Server != nil {
		if err := p.Server.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("clonegate: %w", err))
		}
		p.Server = nil
	}
	if p.Cluster != nil {
		errs = append(errs, p.Cluster.Stop())
		p.Cluster = nil
	}
	return errors.Join(errs...)
}

// process is one component, its output in Dir/<name>.log.
type process struct {
	name    string
	cmd     *exec.Cmd
	log     *os.File
	exited  chan struct{}
	waitErr error
}

func (p *Pipeline) start(name, bin string, args ...string) error {
	log, err := os.Create(p.Log(name))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: a Ctrl-C at the terminal reaches only our
	// process, which stops the components in order; and a component dies with
	// our process rather than outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("pipeline: starting %s: %w", name, err)
	}
	pr := &process{name: name, cmd: cmd, log: log, exited: make(chan struct{})}
	go func() { pr.waitErr = cmd.Wait(); close(pr.exited) }()
	p.procs = append(p.procs, pr)
	return nil
}

// poll waits for cond, failing early when a component has exited.
func (p *Pipeline) poll(ctx context.Context, what string, cond func() bool) error {
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for _, pr := range p.procs {
			select {
			case <-pr.exited:
				return false, fmt.Errorf("%s exited: %v; its log: %s", pr.name, pr.waitErr, p.Log(pr.name))
			default:
			}
		}
		return cond(), nil
	})
	if err != nil {
		return fmt.Errorf("pipeline: waiting for %s: %w", what, err)
	}
	return nil
}

// stop sends SIGTERM and waits; SIGKILL after 10s. An exit caused by the
// SIGTERM is not an error.
func (pr *process) stop() error {
	defer pr.log.Close()
	select {
	case <-pr.exited:
		return fmt.Errorf("%s had exited: %v", pr.name, pr.waitErr)
	default:
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = pr.cmd.Process.Kill()
		<-pr.exited
		return fmt.Errorf("%s did not exit within 10s of SIGTERM", pr.name)
	}
}

func buildDriver(root, out string) error {
	build := exec.Command("go", "build", "-o", out, "./test/csidriver/cmd/csidriver")
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("pipeline: building the CSI driver: %v\n%s", err, strings.TrimSpace(string(b)))
	}
	return nil
}

// WaitSnapshotReady polls until the VolumeSnapshot's status.readyToUse is true.
func (p *Pipeline) WaitSnapshotReady(ctx context.Context, namespace, name string, timeout time.Duration) error {
	snap := &unstructured.Unstructured{}
	snap.SetAPIVersion("snapshot.storage.k8s.io/v1")
	snap.SetKind("VolumeSnapshot")
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := p.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, snap); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		ready, _, _ := unstructured.NestedBool(snap.Object, "status", "readyToUse")
		return ready, nil
	})
	if err != nil {
		return fmt.Errorf("VolumeSnapshot %s/%s is not ready: %w (logs in %s)", namespace, name, err, p.Dir)
	}
	return nil
}
