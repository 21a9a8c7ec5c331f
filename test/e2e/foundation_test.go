package e2e

import (
	"fmt"
	"testing"

	"github.com/clonegate/clonegate/internal/testenv"
)

const (
	mutateDenied   = `admission webhook "mutate.clonegate.dev" denied the request`
	validateDenied = `admission webhook "validate.clonegate.dev" denied the request`
)

func TestSnapshotRestoreGetsAPIGroup(t *testing.T) {
	cases := []struct {
		name, source string
		warnings     []string
	}{
		{"in dataSource", "  dataSource: {kind: VolumeSnapshot, name: nightly}\n",
			[]string{`Warning: spec.dataSource.apiGroup: defaulted to "snapshot.storage.k8s.io"`}},
		{"in dataSourceRef", "  dataSourceRef: {kind: VolumeSnapshot, name: nightly}\n",
			[]string{`Warning: spec.dataSourceRef.apiGroup: defaulted to "snapshot.storage.k8s.io"`}},
		{"in both", "  dataSource: {kind: VolumeSnapshot, name: nightly}\n  dataSourceRef: {kind: VolumeSnapshot, name: nightly}\n",
			[]string{"Warning: spec.dataSource.apiGroup: defaulted", "Warning: spec.dataSourceRef.apiGroup: defaulted"}},
		{"in dataSource, dataSourceRef has it", "  dataSource: {kind: VolumeSnapshot, name: nightly}\n  dataSourceRef: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: nightly}\n",
			[]string{"Warning: spec.dataSource.apiGroup: defaulted", "!spec.dataSourceRef.apiGroup: defaulted"}},
		{"as an empty string", "  dataSource: {apiGroup: '', kind: VolumeSnapshot, name: nightly}\n",
			[]string{"Warning: spec.dataSource.apiGroup: defaulted"}},
	}
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				name := fmt.Sprintf("restore-%d", i)
				r := e.apply(t, ns, claimYAML(name, c.source+"  resources: {requests: {storage: 1Gi}}\n"))
				expect(t, r, 0, append(c.warnings, "persistentvolumeclaim/"+name+" created")...)
				got := e.get(t, ns, name)
				for field, ref := range map[string]*string{
					"dataSource": groupOf(got.Spec.DataSource), "dataSourceRef": groupOfRef(got.Spec.DataSourceRef),
				} {
					if ref == nil || *ref != "snapshot.storage.k8s.io" {
						t.Errorf("stored %s.apiGroup = %v, want snapshot.storage.k8s.io (the source was lost or left without group)", field, ref)
					}
				}
			})
		}
	})
}

func TestCrossNamespaceSourceDenied(t *testing.T) {
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		for _, kind := range []string{"PersistentVolumeClaim", "VolumeSnapshot"} {
			group := ""
			if kind == "VolumeSnapshot" {
				group = "apiGroup: snapshot.storage.k8s.io, "
			}
			manifest := claimYAML("cross-"+map[string]string{"PersistentVolumeClaim": "pvc", "VolumeSnapshot": "snap"}[kind],
				fmt.Sprintf("  dataSourceRef: {%skind: %s, name: src, namespace: team-a}\n  resources: {requests: {storage: 1Gi}}\n", group, kind))
			r := e.apply(t, ns, manifest)
			expect(t, r, 1, mutateDenied, "spec.dataSourceRef.namespace", `"team-a"`, fmt.Sprintf("namespace %q", ns), "cross-namespace sources are not allowed")
			// The same, asked as CI would ask it.
			expect(t, e.apply(t, ns, manifest, "--dry-run=server"), 1, mutateDenied)
		}
		// Naming the claim's own namespace is no cross-namespace reference,
		// but with the gate off the apiserver would drop the whole source
		// (measured): clonegate removes the redundant namespace.
		e.source(t, ns, "src", sourceOpts{request: "1Gi", capacity: "1Gi"})
		r := e.apply(t, ns, claimYAML("same-ns", fmt.Sprintf("  storageClassName: csi-fast\n  dataSourceRef: {kind: PersistentVolumeClaim, name: src, namespace: %s}\n  resources: {requests: {storage: 1Gi}}\n", ns)))
		expect(t, r, 0, "!denied the request", "persistentvolumeclaim/same-ns created", fmt.Sprintf("Warning: spec.dataSourceRef.namespace: removed %q, the claim's own namespace", ns))
		if got := e.get(t, ns, "same-ns").Spec.DataSourceRef; got == nil || got.Name != "src" || got.Namespace != nil {
			t.Errorf("stored dataSourceRef = %+v, want the source kept without namespace", got)
		}
	})
}

func TestCloneSize(t *testing.T) {
	cases := []struct {
		name              string
		request, capacity string // of the source
		clone             string
		denied            bool
		wants             []string
	}{
		{"smaller than the source is denied", "5Gi", "5Gi", "1Gi", true,
			[]string{`spec.resources.requests.storage: Invalid value: "1Gi": must be at least 5Gi`, `source PersistentVolumeClaim "src"`, "request 5Gi or more"}},
		{"the same size in other units is admitted", "5Gi", "5Gi", "5120Mi", false, nil},
		{"one byte short is denied", "5Gi", "5Gi", "5368709119", true, []string{"must be at least 5Gi"}},
		{"larger is admitted", "5Gi", "5Gi", "6Gi", false, nil},
		// The provisioner compares requests only; the driver may refuse it (clone-capacity warns).
		{"a source whose volume is larger than its request warns", "5Gi", "10Gi", "5Gi", false,
			[]string{"Warning:", "must be at least 10Gi, the capacity of", `source PersistentVolumeClaim "src"`, "request 10Gi or more"}},
		{"a source bound to a smaller volume counts its request", "10G", "5Gi", "9G", true, []string{"must be at least 10G"}},
	}
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				src := fmt.Sprintf("src-%d", i)
				e.source(t, ns, src, sourceOpts{request: c.request, capacity: c.capacity})
				clone := fmt.Sprintf("clone-%d", i)
				manifest := cloneYAML(clone, src, c.clone)
				// Server-side dry run gives the same answer and stores nothing.
				dry := e.apply(t, ns, manifest, "--dry-run=server")
				r := e.apply(t, ns, manifest)
				if c.denied {
					expect(t, dry, 1, validateDenied)
					expect(t, r, 1, append([]string{validateDenied}, wantsFor(c.wants, src)...)...)
				} else if len(c.wants) > 0 {
					expect(t, dry, 0, "created (server dry run)")
					expect(t, r, 0, append([]string{"persistentvolumeclaim/" + clone + " created"}, wantsFor(c.wants, src)...)...)
				} else {
					expect(t, dry, 0, "created (server dry run)")
					expect(t, r, 0, "persistentvolumeclaim/"+clone+" created", "!Warning")
				}
			})
		}
	})
}

// wantsFor swaps the generic source name in wants for the real one.
func wantsFor(wants []string, src string) []string {
	out := make([]string, len(wants))
	for i, w := range wants {
		out[i] = w
		if w == `source PersistentVolumeClaim "src"` {
			out[i] = fmt.Sprintf("source PersistentVolumeClaim %q", src)
		}
	}
	return out
}

func TestMissingSourceWarnsByDefault(t *testing.T) {
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		r := e.apply(t, ns, cloneYAML("clone", "not-yet", "1Gi"))
		expect(t, r, 0, "persistentvolumeclaim/clone created",
			`Warning: spec.dataSource.name: Invalid value: "not-yet": PersistentVolumeClaim "not-yet" does not exist in namespace`)
	})
}

func TestMissingSourceDeniedWhenAsked(t *testing.T) {
	e := newEnv(t, testenv.Options{}, "--missing-source=deny")
	ns := e.namespace(t)
	expect(t, e.apply(t, ns, cloneYAML("clone", "not-yet", "1Gi")), 1, validateDenied, `PersistentVolumeClaim "not-yet" does not exist`, "create the source first")
}

// Manifests are often applied together: the source is created a moment
// before its clone, before the informer has seen it.
func TestSourceInTheSameApplyIsFound(t *testing.T) {
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.class(t, "csi-fast", "fast.csi.example.com")
		manifest := claimYAML("src", "  storageClassName: csi-fast\n  resources: {requests: {storage: 5Gi}}\n") + "---\n" + cloneYAML("small", "src", "1Gi")
		r := e.apply(t, ns, manifest)
		expect(t, r, 1, "persistentvolumeclaim/src created", validateDenied, "must be at least 5Gi", "!does not exist")
	})
}

func TestUpdateOfCloneWhoseSourceIsGone(t *testing.T) {
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.source(t, ns, "src", sourceOpts{request: "1Gi", capacity: "1Gi"})
		expect(t, e.apply(t, ns, cloneYAML("clone", "src", "1Gi")), 0, "created")
		expect(t, e.Kubectl("", "delete", "pvc", "-n", ns, "src", "--wait=false"), 0)
		expect(t, e.Kubectl("", "label", "pvc", "-n", ns, "clone", "team=storage"), 0, "labeled")
		expect(t, e.Kubectl("", "patch", "pvc", "-n", ns, "clone", "--type=merge", "-p", `{"metadata":{"finalizers":null}}`), 0, "patched")
		expect(t, e.Kubectl("", "delete", "pvc", "-n", ns, "clone"), 0, "deleted")
	})
}

func TestOtherSourceKinds(t *testing.T) {
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		// A populator's kind with its group, which no API here serves: kept,
		// with a warning that nothing will fill it (unknown-populator), even
		// without the VolumePopulator API.
		r := e.apply(t, ns, claimYAML("populated", "  dataSourceRef: {apiGroup: example.com, kind: Backup, name: b}\n  resources: {requests: {storage: 1Gi}}\n"))
		expect(t, r, 0, "created", `Warning: spec.dataSourceRef.kind: Invalid value: "Backup": no API in the cluster serves Backup.example.com`)
		if got := e.get(t, ns, "populated"); got.Spec.DataSourceRef == nil || got.Spec.DataSourceRef.Kind != "Backup" {
			t.Errorf("stored dataSourceRef = %+v, want the Backup source kept", got.Spec.DataSourceRef)
		}
		// In dataSource the apiserver would drop it: denied (TestDroppedSources).
		r = e.apply(t, ns, claimYAML("dropped", "  dataSource: {kind: Backup, name: b}\n  resources: {requests: {storage: 1Gi}}\n"))
		expect(t, r, 1, `spec.dataSource.kind: Invalid value: "Backup"`, "a populator belongs in dataSourceRef")
	})
}

func TestWebhookDown(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	ns := e.namespace(t)
	if err := e.Server.Stop(); err != nil {
		t.Fatalf("clonegate did not exit cleanly on SIGTERM: %v", err)
	}
	e.Server = nil
	// Plain claims never reach clonegate: an outage does not block them.
	expect(t, e.apply(t, ns, claimYAML("plain", "  resources: {requests: {storage: 1Gi}}\n")), 0, "persistentvolumeclaim/plain created")
	expect(t, e.apply(t, ns, claimYAML("plain-class", "  storageClassName: csi-fast\n  resources: {requests: {storage: 1Gi}}\n")), 0, "created")
	// A clone fails closed, naming the webhook.
	expect(t, e.apply(t, ns, cloneYAML("clone", "src", "1Gi")), 1, `failed calling webhook "validate.clonegate.dev"`)
	// What the apiserver would silently empty is never let through.
	expect(t, e.apply(t, ns, claimYAML("restore", "  dataSource: {kind: VolumeSnapshot, name: nightly}\n  resources: {requests: {storage: 1Gi}}\n")), 1, `failed calling webhook "mutate.clonegate.dev"`)
	expect(t, e.apply(t, ns, claimYAML("cross", "  dataSourceRef: {kind: PersistentVolumeClaim, name: src, namespace: other}\n  resources: {requests: {storage: 1Gi}}\n")), 1, `failed calling webhook "mutate.clonegate.dev"`)
}
