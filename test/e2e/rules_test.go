package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/clonegate/clonegate/internal/testenv"
)

func TestSourceState(t *testing.T) {
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.source(t, ns, "pending", sourceOpts{request: "1Gi"})
		expect(t, e.apply(t, ns, cloneYAML("of-pending", "pending", "1Gi")), 0, "created",
			`Warning: spec.dataSource.name: Invalid value: "pending": source PersistentVolumeClaim "pending" is Pending, not Bound`)

		e.source(t, ns, "going", sourceOpts{request: "1Gi", capacity: "1Gi"})
		expect(t, e.Kubectl("", "patch", "pvc", "-n", ns, "going", "--type=merge", "-p", `{"metadata":{"finalizers":["example.com/hold"]}}`), 0)
		expect(t, e.Kubectl("", "delete", "pvc", "-n", ns, "going", "--wait=false"), 0)
		expect(t, e.apply(t, ns, cloneYAML("of-going", "going", "1Gi")), 1, validateDenied,
			`source PersistentVolumeClaim "going" is being deleted and cannot be cloned`)
		// Let the claim go, so the namespace can.
		expect(t, e.Kubectl("", "patch", "pvc", "-n", ns, "going", "--type=merge", "-p", `{"metadata":{"finalizers":null}}`), 0)
	})
}

func TestClassesAndDrivers(t *testing.T) {
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.class(t, "csi-slow", "slow.csi.example.com")

		e.source(t, ns, "no-class", sourceOpts{request: "1Gi", capacity: "1Gi", class: "-"})
		expect(t, e.apply(t, ns, cloneYAML("of-no-class", "no-class", "1Gi")), 1, validateDenied,
			`source PersistentVolumeClaim "no-class" has no storageClassName`)

		e.source(t, ns, "src", sourceOpts{request: "1Gi", capacity: "1Gi"})
		missingClass := strings.Replace(cloneYAML("bad-class", "src", "1Gi"), "csi-fast", "nope", 1)
		expect(t, e.apply(t, ns, missingClass), 0, "created", `Warning: spec.storageClassName: Invalid value: "nope": StorageClass "nope" does not exist`, `("csi-fast")`)
		classless := strings.Replace(cloneYAML("classless", "src", "1Gi"), "csi-fast", `""`, 1)
		expect(t, e.apply(t, ns, classless), 1, validateDenied, `storageClassName "" is never provisioned`, "!no default StorageClass")
		// A source with storageClassName "" bound to a volume of the right driver is cloned upstream.
		e.source(t, ns, "empty-class", sourceOpts{request: "1Gi", capacity: "1Gi", class: `""`})
		expect(t, e.apply(t, ns, cloneYAML("of-empty-class", "empty-class", "1Gi")), 0, "created", "!Warning")
		// A class created in the same apply is found (read live on a cache miss).
		expect(t, e.apply(t, ns, "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: just-made}\nprovisioner: fast.csi.example.com\n---\n"+
			strings.Replace(cloneYAML("new-class", "src", "1Gi"), "csi-fast", "just-made", 1)), 0, "created", "!Warning")

		otherDriver := strings.Replace(cloneYAML("other-driver", "src", "1Gi"), "csi-fast", "csi-slow", 1)
		expect(t, e.apply(t, ns, otherDriver), 1, validateDenied,
			`is a volume of CSI driver "fast.csi.example.com", but StorageClass "csi-slow" provisions with "slow.csi.example.com"`)

		e.source(t, ns, "hostpath", sourceOpts{request: "1Gi", capacity: "1Gi", driver: "-"})
		expect(t, e.apply(t, ns, cloneYAML("of-hostpath", "hostpath", "1Gi")), 1, validateDenied, "which is not a CSI volume")
	})
}

func TestVolumeMode(t *testing.T) {
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.source(t, ns, "raw", sourceOpts{request: "1Gi", capacity: "1Gi", block: true})
		expect(t, e.apply(t, ns, cloneYAML("fs", "raw", "1Gi")), 1, validateDenied,
			`spec.volumeMode: Invalid value: "Filesystem": source PersistentVolumeClaim "raw" has volumeMode Block`, "set spec.volumeMode to Block")
		expect(t, e.apply(t, ns, cloneYAML("raw-clone", "raw", "1Gi")+"  volumeMode: Block\n"), 0, "created")
	})
}

var (
	snapshotGVK  = schema.GroupVersionKind{Group: "snapshot.storage.k8s.io", Version: "v1", Kind: "VolumeSnapshot"}
	contentGVK   = schema.GroupVersionKind{Group: "snapshot.storage.k8s.io", Version: "v1", Kind: "VolumeSnapshotContent"}
	populatorGVK = schema.GroupVersionKind{Group: "populator.storage.k8s.io", Version: "v1beta1", Kind: "VolumePopulator"}
)

// snapshot creates a VolumeSnapshot with status, and its content by driver.
func (e *env) snapshot(t *testing.T, ns, name string, ready bool, restoreSize, driver string, finalizer bool, contentOpts ...func(*unstructured.Unstructured)) {
	t.Helper()
	ctx := context.Background()
	content := &unstructured.Unstructured{}
	content.SetGroupVersionKind(contentGVK)
	content.SetName(ns + "-" + name)
	content.Object["spec"] = map[string]any{"driver": driver, "deletionPolicy": "Delete",
		"source": map[string]any{"snapshotHandle": "h"}, "volumeSnapshotRef": map[string]any{"namespace": ns, "name": name}}
	for _, f := range contentOpts {
		f(content)
	}
	if err := e.Client.Create(ctx, content); err != nil {
		t.Fatal(err)
	}
	snap := &unstructured.Unstructured{}
	snap.SetGroupVersionKind(snapshotGVK)
	snap.SetNamespace(ns)
	snap.SetName(name)
	if finalizer {
		snap.SetFinalizers([]string{"example.com/hold"})
	}
	snap.Object["spec"] = map[string]any{"source": map[string]any{"volumeSnapshotContentName": content.GetName()}}
	if err := e.Client.Create(ctx, snap); err != nil {
		t.Fatal(err)
	}
	snap.Object["status"] = map[string]any{"readyToUse": ready, "restoreSize": restoreSize, "boundVolumeSnapshotContentName": content.GetName()}
	if err := e.Client.Status().Update(ctx, snap); err != nil {
		t.Fatal(err)
	}
}

func restoreYAML(name, snap, size string) string {
	return claimYAML(name, fmt.Sprintf("  storageClassName: csi-fast\n  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: %s}\n  resources: {requests: {storage: %s}}\n", snap, size))
}

func TestSnapshotRestores(t *testing.T) {
	crds := filepath.Join(root, "test", "e2e", "testdata", "crds")
	backups := filepath.Join(root, "test", "e2e", "testdata", "backup-crd")
	for _, gates := range []string{"", gateOn} {
		t.Run("gates="+gates, func(t *testing.T) {
			e := newEnv(t, testenv.Options{FeatureGates: gates, CRDPaths: []string{crds, backups}})
			ns := e.namespace(t)
			e.class(t, "csi-fast", "fast.csi.example.com")
			e.snapshot(t, ns, "ready", true, "5Gi", "fast.csi.example.com", false)
			e.snapshot(t, ns, "cutting", false, "5Gi", "fast.csi.example.com", false)
			e.snapshot(t, ns, "other-driver", true, "1Gi", "slow.csi.example.com", false)
			e.snapshot(t, ns, "going", true, "1Gi", "fast.csi.example.com", true)
			expect(t, e.Kubectl("", "delete", "volumesnapshot", "-n", ns, "going", "--wait=false"), 0)

			expect(t, e.apply(t, ns, restoreYAML("ok", "ready", "5Gi")), 0, "created", "!Warning")
			expect(t, e.apply(t, ns, restoreYAML("small", "ready", "4Gi")), 1, validateDenied,
				`spec.resources.requests.storage: Invalid value: "4Gi": must be at least 5Gi, the restoreSize of VolumeSnapshot "ready"; request 5Gi or more`)
			expect(t, e.apply(t, ns, restoreYAML("early", "cutting", "5Gi")), 0, "created", `Warning: spec.dataSource.name: Invalid value: "cutting": VolumeSnapshot "cutting" is not readyToUse yet`)
			expect(t, e.apply(t, ns, restoreYAML("wrong-driver", "other-driver", "1Gi")), 1, validateDenied,
				`VolumeSnapshot "other-driver" was taken by CSI driver "slow.csi.example.com", but StorageClass "csi-fast" provisions with "fast.csi.example.com"`)
			expect(t, e.apply(t, ns, restoreYAML("of-going", "going", "1Gi")), 1, validateDenied, `VolumeSnapshot "going" is being deleted`)
			// A snapshot being deleted that the provisioner still restores from.
			e.snapshot(t, ns, "protected", true, "1Gi", "fast.csi.example.com", true)
			expect(t, e.Kubectl("", "patch", "volumesnapshot", "-n", ns, "protected", "--type=json", "-p",
				`[{"op":"add","path":"/metadata/finalizers/-","value":"provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection"}]`), 0)
			expect(t, e.Kubectl("", "delete", "volumesnapshot", "-n", ns, "protected", "--wait=false"), 0)
			expect(t, e.apply(t, ns, restoreYAML("of-protected", "protected", "1Gi")), 0, "created", "!Warning")

			// Volume mode: the content's sourceVolumeMode, unless it allows a change.
			mode := func(m string, allow string) func(*unstructured.Unstructured) {
				return func(c *unstructured.Unstructured) {
					_ = unstructured.SetNestedField(c.Object, m, "spec", "sourceVolumeMode")
					if allow != "" {
						c.SetAnnotations(map[string]string{"snapshot.storage.kubernetes.io/allow-volume-mode-change": allow})
					}
				}
			}
			e.snapshot(t, ns, "of-fs", true, "1Gi", "fast.csi.example.com", false, mode("Filesystem", ""))
			e.snapshot(t, ns, "of-block", true, "1Gi", "fast.csi.example.com", false, mode("Block", ""))
			e.snapshot(t, ns, "of-fs-convertible", true, "1Gi", "fast.csi.example.com", false, mode("Filesystem", "true"))
			e.snapshot(t, ns, "of-fs-not-convertible", true, "1Gi", "fast.csi.example.com", false, mode("Filesystem", "false"))
			expect(t, e.apply(t, ns, restoreYAML("fs-from-fs", "of-fs", "1Gi")), 0, "created", "!Warning")
			expect(t, e.apply(t, ns, restoreYAML("block-from-fs", "of-fs", "1Gi")+"  volumeMode: Block\n"), 1, validateDenied,
				`spec.volumeMode: Invalid value: "Block": VolumeSnapshot "of-fs" was taken from a Filesystem volume`, "allow-volume-mode-change")
			expect(t, e.apply(t, ns, restoreYAML("fs-from-block", "of-block", "1Gi")), 1, validateDenied, `was taken from a Block volume`, "set spec.volumeMode to Block")
			expect(t, e.apply(t, ns, restoreYAML("block-from-convertible", "of-fs-convertible", "1Gi")+"  volumeMode: Block\n"), 0, "created",
				`Warning: spec.volumeMode: Invalid value: "Block": VolumeSnapshot "of-fs-convertible" was taken from a Filesystem volume; its VolumeSnapshotContent allows a mode change`)
			expect(t, e.apply(t, ns, restoreYAML("fs-from-convertible", "of-fs-convertible", "1Gi")), 0, "created", "!Warning")
			expect(t, e.apply(t, ns, restoreYAML("block-from-not-convertible", "of-fs-not-convertible", "1Gi")+"  volumeMode: Block\n"), 1, validateDenied)

			// A restore with storageClassName "" is never provisioned; a class not there yet only warns.
			expect(t, e.apply(t, ns, strings.Replace(restoreYAML("classless", "ready", "5Gi"), "csi-fast", `""`, 1)), 1, validateDenied, `storageClassName "" is never provisioned`)
			expect(t, e.apply(t, ns, strings.Replace(restoreYAML("class-later", "ready", "5Gi"), "csi-fast", "later", 1)), 0, "created", `Warning: spec.storageClassName: Invalid value: "later": StorageClass "later" does not exist`)
			expect(t, e.apply(t, ns, restoreYAML("of-nothing", "nothing", "1Gi")), 0, "created", `VolumeSnapshot "nothing" does not exist`)
			// Without apiGroup: defaulted by the mutating webhook, then judged.
			noGroup := strings.Replace(restoreYAML("small-no-group", "ready", "1Gi"), "apiGroup: snapshot.storage.k8s.io, ", "", 1)
			expect(t, e.apply(t, ns, noGroup), 1, "Warning: spec.dataSource.apiGroup: defaulted", validateDenied, "must be at least 5Gi")

			// Populators: a registered kind is fine, an unregistered one warns.
			pop := &unstructured.Unstructured{}
			pop.SetGroupVersionKind(populatorGVK)
			pop.SetName("backups")
			pop.Object["sourceKind"] = map[string]any{"group": "backup.example.com", "kind": "Backup"}
			if err := e.Client.Create(context.Background(), pop); err != nil {
				t.Fatal(err)
			}
			populated := func(name, kind string) string {
				return claimYAML(name, fmt.Sprintf("  dataSourceRef: {apiGroup: backup.example.com, kind: %s, name: b}\n  resources: {requests: {storage: 1Gi}}\n", kind))
			}
			expect(t, e.apply(t, ns, populated("from-backup", "Backup")), 0, "created", "!Warning")
			expect(t, e.apply(t, ns, populated("from-nothing", "Nothing")), 0, "created",
				"Warning: spec.dataSourceRef.kind: Invalid value: \"Nothing\": no API in the cluster serves Nothing.backup.example.com")
			// Served (by a CRD) but registered by no VolumePopulator.
			expect(t, e.apply(t, ns, populated("from-archive", "Archive")), 0, "created",
				"Warning: spec.dataSourceRef.kind: Invalid value: \"Archive\": no VolumePopulator is registered for Archive.backup.example.com")
		})
	}
}

func TestPolicyFile(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("rules:\n  clone-size: warn\n  missing-source: deny\nexemptNamespaces: [legacy]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, testenv.Options{}, "--policy", policy)
	ns := e.namespace(t)
	e.source(t, ns, "src", sourceOpts{request: "5Gi", capacity: "5Gi"})
	expect(t, e.apply(t, ns, cloneYAML("small", "src", "1Gi")), 0, "created", "Warning: spec.resources.requests.storage", "must be at least 5Gi")
	expect(t, e.apply(t, ns, cloneYAML("orphan", "nothing", "1Gi")), 1, validateDenied, `PersistentVolumeClaim "nothing" does not exist`)

	expect(t, e.Kubectl("", "create", "namespace", "legacy"), 0)
	e.source(t, "legacy", "src", sourceOpts{request: "5Gi", capacity: "5Gi"})
	expect(t, e.apply(t, "legacy", cloneYAML("small", "src", "1Gi")), 0, "created", "!Warning")
}

func TestMalformedPolicyStopsTheServer(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("rules:\n  clone-size: deny\n  clone-sise: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(clonegate, "serve", "--policy", policy).CombinedOutput()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Fatalf("clonegate serve with a bad policy: err %v, want exit code 1; output:\n%s", err, out)
	}
	for _, want := range []string{policy, "line 3", `unknown rule "clone-sise"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestMetricsCountFindingsByRule(t *testing.T) {
	e := shared["gate-off"]
	ns := e.namespace(t)
	e.source(t, ns, "src", sourceOpts{request: "5Gi", capacity: "5Gi"})
	expect(t, e.apply(t, ns, cloneYAML("small", "src", "1Gi")), 1, validateDenied)
	expect(t, e.apply(t, ns, cloneYAML("orphan", "nothing", "1Gi")), 0, "Warning")
	resp, err := http.Get("http://" + e.Server.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`clonegate_findings_total{action="deny",rule="clone-size"}`,
		`clonegate_findings_total{action="warn",rule="missing-source"}`,
		`clonegate_reviews_total{operation="CREATE",verdict="denied",webhook="validate"}`,
		`clonegate_review_duration_seconds_bucket{webhook="validate",le="0.0005"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// In a cluster that serves VolumeSnapshots but not VolumeSnapshotContents, a
// ready restore is admitted: the checks that need the content are skipped,
// with a warning that says so, never denied.
func TestRestoreWithoutTheContentAPI(t *testing.T) {
	crd := filepath.Join(root, "test", "e2e", "testdata", "crds", "snapshot.storage.k8s.io_volumesnapshots.yaml")
	e := newEnv(t, testenv.Options{CRDPaths: []string{crd}})
	ns := e.namespace(t)
	e.class(t, "csi-fast", "fast.csi.example.com")
	snap := &unstructured.Unstructured{}
	snap.SetGroupVersionKind(snapshotGVK)
	snap.SetNamespace(ns)
	snap.SetName("nightly")
	snap.Object["spec"] = map[string]any{"source": map[string]any{"volumeSnapshotContentName": "c"}}
	ctx := context.Background()
	if err := e.Client.Create(ctx, snap); err != nil {
		t.Fatal(err)
	}
	snap.Object["status"] = map[string]any{"readyToUse": true, "restoreSize": "1Gi", "boundVolumeSnapshotContentName": "c"}
	if err := e.Client.Status().Update(ctx, snap); err != nil {
		t.Fatal(err)
	}
	expect(t, e.apply(t, ns, restoreYAML("restore", "nightly", "1Gi")), 0, "persistentvolumeclaim/restore created",
		`Warning: spec.dataSource.name: Invalid value: "nightly": not checked: driver-mismatch, volume-mode (clonegate could not read the VolumeSnapshotContent: VolumeSnapshotContent "c": its API is not served in this cluster)`)
	expect(t, e.apply(t, ns, restoreYAML("small", "nightly", "512Mi")), 1, validateDenied, "must be at least 1Gi")
}
