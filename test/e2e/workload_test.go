package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/clonegate/clonegate/internal/testenv"
)

const (
	statefulSetDenied = `admission webhook "validate-statefulset.clonegate.dev" denied the request`
	podDenied         = `admission webhook "validate-pod.clonegate.dev" denied the request`
)

// statefulSetYAML is a StatefulSet of no replicas (nothing runs in envtest)
// with one claim template; source is the template's dataSource line, if any.
func statefulSetYAML(name, source, size string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: %s}
spec:
  serviceName: %[1]s
  replicas: 0
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec: {containers: [{name: c, image: busybox}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: csi-fast
      %s
      resources: {requests: {storage: %s}}
`, name, source, size)
}

// podYAML is a Pod with a generic ephemeral volume; source is its dataSource line, if any.
func podYAML(name, source, size string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  containers: [{name: c, image: busybox}]
  volumes:
  - name: config
    emptyDir: {}
  - name: scratch
    ephemeral:
      volumeClaimTemplate:
        spec:
          accessModes: [ReadWriteOnce]
          storageClassName: csi-fast
          %s
          resources: {requests: {storage: %s}}
`, name, source, size)
}

func TestWorkloadTemplates(t *testing.T) {
	clone := func(src string) string {
		return fmt.Sprintf("dataSource: {kind: PersistentVolumeClaim, name: %s}", src)
	}
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.source(t, ns, "src", sourceOpts{request: "5Gi", capacity: "5Gi"})

		expect(t, e.apply(t, ns, statefulSetYAML("db-small", clone("src"), "1Gi")), 1, statefulSetDenied,
			`spec.volumeClaimTemplates[0].spec.resources.requests.storage: Invalid value: "1Gi": must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`)
		expect(t, e.apply(t, ns, statefulSetYAML("db", clone("src"), "5Gi")), 0, "statefulset.apps/db created", "!Warning")
		expect(t, e.apply(t, ns, statefulSetYAML("db-orphan", clone("nothing"), "1Gi")), 0, "created",
			`Warning: spec.volumeClaimTemplates[0].spec.dataSource.name: Invalid value: "nothing": PersistentVolumeClaim "nothing" does not exist`)
		// The apiserver keeps a cross-namespace dataSourceRef in a template
		// (gate off too), and the claims made from it would be refused one by one.
		expect(t, e.apply(t, ns, statefulSetYAML("db-cross", "dataSourceRef: {kind: PersistentVolumeClaim, name: src, namespace: team-a}", "5Gi")), 1,
			statefulSetDenied, "spec.volumeClaimTemplates[0].spec.dataSourceRef.namespace", "cross-namespace sources are not allowed")
		// A snapshot without apiGroup in a template is refused by the apiserver itself.
		expect(t, e.apply(t, ns, statefulSetYAML("db-nogroup", "dataSource: {kind: VolumeSnapshot, name: nightly}", "5Gi")), 1,
			`spec.volumeClaimTemplates[0].spec.dataSource: Invalid value: "VolumeSnapshot": must be 'PersistentVolumeClaim' when referencing the default apiGroup`)

		expect(t, e.apply(t, ns, podYAML("p-small", clone("src"), "1Gi")), 1, podDenied,
			`spec.volumes[1].ephemeral.volumeClaimTemplate.spec.resources.requests.storage: Invalid value: "1Gi": must be at least 5Gi`)
		expect(t, e.apply(t, ns, podYAML("p-orphan", clone("nothing"), "5Gi")), 0, "pod/p-orphan created",
			`Warning: spec.volumes[1].ephemeral.volumeClaimTemplate.spec.dataSource.name: Invalid value: "nothing": PersistentVolumeClaim "nothing" does not exist`)
		expect(t, e.apply(t, ns, podYAML("p", clone("src"), "5Gi")), 0, "pod/p created", "!Warning")
		// Server-side dry run, as CI asks, gives the same answer.
		expect(t, e.apply(t, ns, podYAML("p-dry", clone("src"), "2Gi"), "--dry-run=server"), 1, podDenied)
	})
}

// Plain workloads never reach clonegate: the matchConditions keep them away,
// which the webhook's own review counter shows.
func TestPlainWorkloadsNeverReachTheWebhook(t *testing.T) {
	e := newEnv(t, testenv.Options{})
	ns := e.namespace(t)
	e.source(t, ns, "src", sourceOpts{request: "5Gi", capacity: "5Gi"})
	plainPod := podYAML("plain", "", "1Gi") // an ephemeral volume, but no data source
	expect(t, e.apply(t, ns, plainPod), 0, "pod/plain created")
	expect(t, e.apply(t, ns, "apiVersion: v1\nkind: Pod\nmetadata: {name: bare}\nspec: {containers: [{name: c, image: busybox}]}\n"), 0, "pod/bare created")
	expect(t, e.apply(t, ns, statefulSetYAML("plain", "", "1Gi")), 0, "statefulset.apps/plain created")
	expect(t, e.apply(t, ns, "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: bare}\nspec:\n  selector: {matchLabels: {app: b}}\n  template:\n    metadata: {labels: {app: b}}\n    spec: {containers: [{name: c, image: busybox}]}\n"), 0, "created")
	if got := reviews(t, e); strings.Contains(got, "validate-pod") || strings.Contains(got, "validate-statefulset") {
		t.Errorf("plain workloads were reviewed:\n%s", got)
	}
	expect(t, e.apply(t, ns, podYAML("clone", "dataSource: {kind: PersistentVolumeClaim, name: src}", "5Gi")), 0, "created")
	expect(t, e.apply(t, ns, statefulSetYAML("clone", "dataSource: {kind: PersistentVolumeClaim, name: src}", "5Gi")), 0, "created")
	got := reviews(t, e)
	for _, want := range []string{
		`clonegate_reviews_total{operation="CREATE",verdict="allowed",webhook="validate-pod"} 1`,
		`clonegate_reviews_total{operation="CREATE",verdict="allowed",webhook="validate-statefulset"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %s:\n%s", want, got)
		}
	}

	// With clonegate down, workloads are still admitted (failurePolicy
	// Ignore): the claims they create meet the claim webhooks, which fail closed.
	if err := e.Server.Stop(); err != nil {
		t.Fatal(err)
	}
	e.Server = nil
	expect(t, e.apply(t, ns, podYAML("plain-down", "", "1Gi")), 0, "pod/plain-down created")
	expect(t, e.apply(t, ns, statefulSetYAML("plain-down", "", "1Gi")), 0, "statefulset.apps/plain-down created")
	expect(t, e.apply(t, ns, statefulSetYAML("clone-down", "dataSource: {kind: PersistentVolumeClaim, name: src}", "1Gi")), 0, "created")
	expect(t, e.apply(t, ns, cloneYAML("claim-down", "src", "1Gi")), 1, `failed calling webhook "validate.clonegate.dev"`)
}

// reviews returns the clonegate_reviews_total lines of the metrics.
func reviews(t *testing.T, e *env) string {
	t.Helper()
	resp, err := http.Get("http://" + e.Server.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "clonegate_reviews_total{") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
