package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/clonegate/clonegate/internal/testenv"
)

// A user who may only create Pods and StatefulSets in their own namespace
// learns nothing through clonegate about claims and snapshots in another:
// not their size, driver or mode, not even whether they exist. The answer to
// a workload (or a claim review sent straight to the webhook) naming one is
// the cross-namespace finding alone, word for word the same for an object
// that exists and one that does not.
func TestNoOracleIntoOtherNamespaces(t *testing.T) {
	crds := filepath.Join(root, "test", "e2e", "testdata", "crds")
	e := newEnv(t, testenv.Options{FeatureGates: gateOn, CRDPaths: []string{crds}})
	victim, attacker := e.namespace(t), e.namespace(t)
	e.source(t, victim, "db", sourceOpts{request: "100Gi", capacity: "100Gi", block: true, driver: "secret.csi.example.com"})
	e.snapshot(t, victim, "nightly", true, "100Gi", "secret.csi.example.com", false)
	role := `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: workloads}
rules:
- {apiGroups: [""], resources: [pods], verbs: [create, get]}
- {apiGroups: [apps], resources: [statefulsets], verbs: [create, get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: mallory-workloads}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: workloads}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}]
`
	expect(t, e.apply(t, attacker, role), 0)

	// What would give a source away, were it described.
	secrets := []string{"100Gi", "secret.csi.example.com", "Block", "does not exist", "not readyToUse", "restoreSize", "Bound", "Pending"}
	claimRef := func(name string) string {
		return fmt.Sprintf("dataSourceRef: {kind: PersistentVolumeClaim, name: %s, namespace: %s}", name, victim)
	}
	snapRef := func(name string) string {
		return fmt.Sprintf("dataSourceRef: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: %s, namespace: %s}", name, victim)
	}
	for _, c := range []struct {
		what, denied  string
		manifest      func(name, source, size string) string
		ref           func(string) string
		real, missing string
	}{
		{"a Pod naming a claim", podDenied, podYAML, claimRef, "db", "nothere"},
		{"a Pod naming a snapshot", podDenied, podYAML, snapRef, "nightly", "nothere"},
		{"a StatefulSet naming a claim", statefulSetDenied, statefulSetYAML, claimRef, "db", "nothere"},
		{"a StatefulSet naming a snapshot", statefulSetDenied, statefulSetYAML, snapRef, "nightly", "nothere"},
	} {
		t.Run(c.what, func(t *testing.T) {
			var answers []string
			for _, name := range []string{c.real, c.missing} {
				r := e.Kubectl(c.manifest("probe", c.ref(name), "1Gi"), "apply", "--as=mallory", "-n", attacker, "--dry-run=server", "-f", "-")
				wants := []string{c.denied, "cross-namespace sources are not allowed"}
				for _, s := range secrets {
					wants = append(wants, "!"+s)
				}
				expect(t, r, 1, wants...)
				answers = append(answers, strings.ReplaceAll(r.Output(), name, "NAME"))
			}
			if answers[0] != answers[1] {
				t.Errorf("the answer tells an existing source from a missing one:\n%s\n---\n%s", answers[0], answers[1])
			}
		})
	}

	// The same question sent straight to the validating webhook, as any pod
	// that reaches its port could.
	var answers []string
	for _, name := range []string{"db", "nothere"} {
		body := fmt.Sprintf(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"probe",`+
			`"kind":{"group":"","version":"v1","kind":"PersistentVolumeClaim"},"resource":{"group":"","version":"v1","resource":"persistentvolumeclaims"},`+
			`"name":"c","namespace":%[1]q,"operation":"CREATE","userInfo":{"username":"mallory"},`+
			`"object":{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"c","namespace":%[1]q},`+
			`"spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"csi-fast","resources":{"requests":{"storage":"1Gi"}},"dataSourceRef":{"kind":"PersistentVolumeClaim","name":%[2]q,"namespace":%[3]q}}}}}`,
			attacker, name, victim)
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: servingRoots(e)}}}
		resp, err := c.Post("https://"+webhookAddr(e)+"/validate--v1-persistentvolumeclaim", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var review admissionv1.AdmissionReview
		err = json.NewDecoder(resp.Body).Decode(&review)
		resp.Body.Close()
		if err != nil || review.Response == nil || review.Response.Result == nil {
			t.Fatalf("review of a claim naming %s/%s: %v %+v", victim, name, err, review)
		}
		answer, _ := json.Marshal(review.Response)
		if review.Response.Allowed || !strings.Contains(string(answer), "cross-namespace sources are not allowed") {
			t.Errorf("a direct review naming %s/%s: %s; want the cross-namespace denial", victim, name, answer)
		}
		for _, s := range secrets {
			if strings.Contains(string(answer), s) {
				t.Errorf("a direct review naming %s/%s tells %q: %s", victim, name, s, answer)
			}
		}
		answers = append(answers, strings.ReplaceAll(string(answer), name, "NAME"))
	}
	if answers[0] != answers[1] {
		t.Errorf("a direct review tells an existing source from a missing one:\n%s\n---\n%s", answers[0], answers[1])
	}
}
