package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/clonegate/clonegate/internal/testenv"
)

func TestCrossNamespaceWithReferenceGrant(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("crossNamespace:\n  allowWithReferenceGrant: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	crds := filepath.Join(root, "test", "e2e", "testdata", "crds")
	e := newEnv(t, testenv.Options{FeatureGates: gateOn, CRDPaths: []string{crds}}, "--policy", policy)
	for _, ns := range []string{"team-a", "team-b"} {
		expect(t, e.Kubectl("", "create", "namespace", ns), 0)
	}
	e.source(t, "team-a", "src", sourceOpts{request: "1Gi", capacity: "1Gi"})
	clone := func(name, size string) string {
		return claimYAML(name, "  storageClassName: csi-fast\n  dataSourceRef: {kind: PersistentVolumeClaim, name: src, namespace: team-a}\n  resources: {requests: {storage: "+size+"}}\n")
	}

	expect(t, e.apply(t, "team-b", clone("before-grant", "1Gi")), 1, mutateDenied,
		`no ReferenceGrant in namespace "team-a" grants PersistentVolumeClaims in "team-b" the PersistentVolumeClaim "src"`)

	grant := `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: clones-for-team-b}
spec:
  from: [{group: "", kind: PersistentVolumeClaim, namespace: team-b}]
  to: [{group: "", kind: PersistentVolumeClaim}]
`
	expect(t, e.apply(t, "team-a", grant), 0, "created")

	expect(t, e.apply(t, "team-b", clone("granted", "1Gi")), 0, "persistentvolumeclaim/granted created")
	if got := e.get(t, "team-b", "granted").Spec.DataSourceRef; got == nil || got.Namespace == nil || *got.Namespace != "team-a" {
		t.Errorf("stored dataSourceRef = %+v, want the team-a source kept", got)
	}
	// Granted, then judged like any clone against its source in team-a.
	expect(t, e.apply(t, "team-b", clone("granted-small", "512Mi")), 1, validateDenied, "must be at least 1Gi")

	// A user who may create claims in team-b but not read the source in team-a.
	role := `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: claims}
rules: [{apiGroups: [""], resources: [persistentvolumeclaims, pods], verbs: [create, get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-claims}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: claims}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
`
	expect(t, e.apply(t, "team-b", role), 0)
	expect(t, e.Kubectl(clone("by-alice", "1Gi"), "apply", "--as=alice", "-n", "team-b", "-f", "-"), 1, mutateDenied,
		`user "alice" may not get PersistentVolumeClaim "src" in namespace "team-a"`)

	// A workload's templates are checked at its CREATE, as its creator: the
	// claims the controllers make later would be checked as the controller.
	podFrom := func(name, size string) string {
		return podYAML(name, "dataSourceRef: {kind: PersistentVolumeClaim, name: src, namespace: team-a}", size)
	}
	expect(t, e.apply(t, "team-b", podFrom("granted-pod", "1Gi")), 0, "pod/granted-pod created", "!Warning")
	expect(t, e.apply(t, "team-b", podFrom("granted-pod-small", "512Mi")), 1, podDenied, "must be at least 1Gi")
	expect(t, e.Kubectl(podFrom("by-alice", "512Mi"), "apply", "--as=alice", "-n", "team-b", "-f", "-"), 1, podDenied,
		`user "alice" may not get PersistentVolumeClaim "src" in namespace "team-a"`, "!must be at least")
}
