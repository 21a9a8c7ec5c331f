package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/clonegate/clonegate/internal/testenv"
)

// droppedShapes are the data sources the apiserver drops in silence when
// given in dataSource without dataSourceRef (its
// EnforceDataSourceBackwardsCompatibility keeps only a core-group
// PersistentVolumeClaim and a snapshot.storage.k8s.io VolumeSnapshot), each
// with the fix clonegate must name.
var droppedShapes = []struct{ name, source, fix string }{
	{"clone-group-v1", "{apiGroup: v1, kind: PersistentVolumeClaim, name: src}", "a PersistentVolumeClaim is in the core group: remove apiGroup"},
	{"clone-group-core", "{apiGroup: core, kind: PersistentVolumeClaim, name: src}", "a PersistentVolumeClaim is in the core group: remove apiGroup"},
	{"restore-versioned-group", "{apiGroup: snapshot.storage.k8s.io/v1, kind: VolumeSnapshot, name: nightly}", "apiGroup is a group, not group/version: snapshot.storage.k8s.io"},
	{"restore-kind-case", "{apiGroup: snapshot.storage.k8s.io, kind: volumesnapshot, name: nightly}", "kind is case-sensitive: VolumeSnapshot"},
	{"clone-kind-case", "{kind: persistentvolumeclaim, name: src}", "kind is case-sensitive: PersistentVolumeClaim"},
	{"populator-in-datasource", "{apiGroup: backup.example.com, kind: Backup, name: b}", "a populator belongs in dataSourceRef"},
}

func droppedYAML(name, source string) string {
	return claimYAML(name, fmt.Sprintf("  dataSource: %s\n  resources: {requests: {storage: 1Gi}}\n", source))
}

// A bare apiserver stores each shape with its source dropped: an empty volume
// instead of the data. Measured in kube-system, which the webhooks'
// namespaceSelector spares, so that the suite notices when Kubernetes
// changes. With clonegate up, each is denied with its fix.
func TestDroppedSources(t *testing.T) {
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		for _, s := range droppedShapes {
			t.Run(s.name, func(t *testing.T) {
				bare := fmt.Sprintf("%s-%s", strings.TrimPrefix(e.Name, "gate-"), s.name)
				expect(t, e.apply(t, "kube-system", droppedYAML(bare, s.source)), 0, "created")
				if got := e.get(t, "kube-system", bare); got.Spec.DataSource != nil || got.Spec.DataSourceRef != nil {
					t.Errorf("a bare apiserver kept the source (dataSource %+v, dataSourceRef %+v): the shape is no longer dropped, revisit rule dropped-source",
						got.Spec.DataSource, got.Spec.DataSourceRef)
				}
				r := e.apply(t, ns, droppedYAML(s.name, s.source))
				expect(t, r, 1, `admission webhook "mutate.clonegate.dev" denied the request`, "would silently drop this one, provisioning an empty volume", s.fix)
			})
		}
	})
}

// With clonegate down every dropped shape fails closed (the matchConditions
// send it to the mutating webhook), while plain claims and well-formed
// sources never reach that webhook.
func TestDroppedSourcesFailClosed(t *testing.T) {
	for name, gates := range map[string]string{"gate-off": "", "gate-on": gateOn} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, testenv.Options{FeatureGates: gates})
			ns := e.namespace(t)
			e.source(t, ns, "src", sourceOpts{request: "1Gi", capacity: "1Gi"})
			// Well-formed sources and plain claims reach the mutating webhook never.
			expect(t, e.apply(t, ns, cloneYAML("clone", "src", "1Gi")), 0, "created")
			expect(t, e.apply(t, ns, droppedYAML("restore", "{apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: nightly}")), 0, "created")
			expect(t, e.apply(t, ns, claimYAML("populated", "  dataSourceRef: {apiGroup: backup.example.com, kind: Backup, name: b}\n  resources: {requests: {storage: 1Gi}}\n")), 0, "created")
			expect(t, e.apply(t, ns, claimYAML("plain", "  resources: {requests: {storage: 1Gi}}\n")), 0, "created")
			if got := reviews(t, e); strings.Contains(got, `webhook="mutate"`) {
				t.Errorf("well-formed claims reached the mutating webhook:\n%s", got)
			}
			if err := e.Server.Stop(); err != nil {
				t.Fatal(err)
			}
			e.Server = nil
			for _, s := range droppedShapes {
				expect(t, e.apply(t, ns, droppedYAML(s.name, s.source)), 1, `failed calling webhook "mutate.clonegate.dev"`)
			}
			expect(t, e.apply(t, ns, claimYAML("plain-down", "  resources: {requests: {storage: 1Gi}}\n")), 0, "created")
			expect(t, e.apply(t, ns, cloneYAML("clone-down", "src", "1Gi")), 1, `failed calling webhook "validate.clonegate.dev"`, `!mutate.clonegate.dev`)
		})
	}
}

// A namespace labelled clonegate.dev/exempt=true is left out by every
// webhook's namespaceSelector: with clonegate down its clones are still
// created, while an unlabelled namespace fails closed.
func TestExemptLabelHoldsDuringAnOutage(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	exempt, guarded := e.namespace(t), e.namespace(t)
	expect(t, e.Kubectl("", "label", "namespace", exempt, "clonegate.dev/exempt=true"), 0, "labeled")
	for _, ns := range []string{exempt, guarded} {
		e.source(t, ns, "src", sourceOpts{request: "1Gi", capacity: "1Gi"})
	}
	if err := e.Server.Stop(); err != nil {
		t.Fatal(err)
	}
	e.Server = nil
	expect(t, e.apply(t, exempt, cloneYAML("clone", "src", "1Gi")), 0, "persistentvolumeclaim/clone created")
	expect(t, e.apply(t, exempt, podYAML("p", "dataSource: {kind: PersistentVolumeClaim, name: src}", "1Gi")), 0, "pod/p created")
	expect(t, e.apply(t, guarded, cloneYAML("clone", "src", "1Gi")), 1, `failed calling webhook "validate.clonegate.dev"`)
	expect(t, e.apply(t, guarded, droppedYAML("dropped", droppedShapes[0].source)), 1, `failed calling webhook "mutate.clonegate.dev"`)
}
