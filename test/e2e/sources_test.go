package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/clonegate/clonegate/internal/testenv"
)

// Restores and populated claims are judged from informers, as clones are:
// once the snapshot and populator APIs are served — here installed after
// clonegate started — a review of a known source costs the apiserver no
// read. A miss is still read live.
func TestSourcesFromInformers(t *testing.T) {
	e := newEnv(t, testenv.Options{}) // no snapshot or populator API yet
	ns := e.namespace(t)
	e.class(t, "csi-fast", "fast.csi.example.com")

	crds := filepath.Join(root, "test", "e2e", "testdata", "crds")
	expect(t, e.Kubectl("", "apply", "-f", crds, "-f", filepath.Join(root, "test", "e2e", "testdata", "backup-crd")), 0)
	expect(t, e.Kubectl("", "wait", "--for=condition=established", "--timeout=60s",
		"crd/volumesnapshots.snapshot.storage.k8s.io", "crd/volumesnapshotcontents.snapshot.storage.k8s.io",
		"crd/volumepopulators.populator.storage.k8s.io", "crd/backups.backup.example.com"), 0)
	e.snapshot(t, ns, "ready", true, "5Gi", "fast.csi.example.com", false)
	pop := &unstructured.Unstructured{}
	pop.SetGroupVersionKind(populatorGVK)
	pop.SetName("backups")
	pop.Object["sourceKind"] = map[string]any{"group": "backup.example.com", "kind": "Backup"}
	if err := e.Client.Create(context.Background(), pop); err != nil {
		t.Fatal(err)
	}

	// create, not apply: kubectl apply reads the claim first.
	create := func(manifest string) testenv.Result {
		return e.Kubectl(manifest, "create", "-n", ns, "--dry-run=server", "-f", "-")
	}
	restore := restoreYAML("r", "ready", "5Gi")
	populated := claimYAML("p", "  dataSourceRef: {apiGroup: backup.example.com, kind: Backup, name: b}\n  resources: {requests: {storage: 1Gi}}\n")

	// The first reviews read live and find the APIs served, which starts
	// the informers at once rather than at the next discovery interval.
	waitFor(t, "reviews of known sources to cost no apiserver read", func() bool {
		before := sourceReads(t, e)
		expect(t, create(restore), 0, "created", "!Warning")
		expect(t, create(populated), 0, "created", "!Warning")
		return sourceReads(t, e) == before
	})
	before := sourceReads(t, e)
	for i := range 5 {
		expect(t, create(restoreYAML(fmt.Sprintf("r%d", i), "ready", "5Gi")), 0, "created", "!Warning")
	}
	if got := sourceReads(t, e) - before; got != 0 {
		t.Errorf("5 restore reviews of a cached snapshot cost %d apiserver reads; want 0", got)
	}
	// A denial is confirmed on what the apiserver says now: the snapshot and
	// its content, read once each, and only for a denial.
	before = sourceReads(t, e)
	for i := range 5 {
		expect(t, create(restoreYAML(fmt.Sprintf("small%d", i), "ready", "4Gi")), 1, validateDenied, "must be at least 5Gi")
	}
	if got := sourceReads(t, e) - before; got != 10 {
		t.Errorf("5 denied restores cost %d apiserver reads; want 10 (the snapshot and its content, each confirmed once)", got)
	}
	// A snapshot created a moment ago is found, live.
	e.snapshot(t, ns, "fresh", true, "5Gi", "fast.csi.example.com", false)
	expect(t, create(restoreYAML("f", "fresh", "1Gi")), 1, validateDenied, `must be at least 5Gi, the restoreSize of VolumeSnapshot "fresh"`)
}

// A clone of a known source is judged from the claim index and the volume
// and class informers, read in place: its review costs the apiserver no read
// of the claim, its volume or the class. A denial is confirmed live: the
// three, once each.
func TestClonesFromCaches(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	ns := e.namespace(t)
	e.source(t, ns, "src", sourceOpts{request: "5Gi", capacity: "5Gi"})
	create := func(manifest string) testenv.Result {
		return e.Kubectl(manifest, "create", "-n", ns, "--dry-run=server", "-f", "-")
	}
	reads := func() int { return readsOf(t, e, "persistentvolumeclaims", "persistentvolumes", "storageclasses") }
	waitFor(t, "a clone of the source to cost no apiserver read", func() bool {
		before := reads()
		expect(t, create(cloneYAML("c", "src", "5Gi")), 0, "created", "!Warning")
		return reads() == before
	})
	before := reads()
	for i := range 5 {
		expect(t, create(cloneYAML(fmt.Sprintf("c%d", i), "src", "5Gi")), 0, "created", "!Warning")
	}
	if got := reads() - before; got != 0 {
		t.Errorf("5 clone reviews of a cached source cost %d apiserver reads; want 0", got)
	}
	before = reads()
	for i := range 2 {
		expect(t, create(cloneYAML(fmt.Sprintf("small%d", i), "src", "4Gi")), 1, validateDenied, "must be at least 5Gi")
	}
	if got := reads() - before; got != 6 {
		t.Errorf("2 denied clones cost %d apiserver reads; want 6 (the source, its volume and the class, each confirmed once)", got)
	}
}
