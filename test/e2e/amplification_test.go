package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/clonegate/clonegate/internal/testenv"
	"github.com/clonegate/clonegate/webhook"
)

// sourceReads is how many GETs and LISTs of what clonegate reads live
// (claims, snapshots and their contents, populators, ReferenceGrants) the
// apiserver has served, from its own apiserver_request_total.
func sourceReads(t *testing.T, e *env) int {
	t.Helper()
	return readsOf(t, e, "persistentvolumeclaims", "volumesnapshots", "volumesnapshotcontents", "volumepopulators", "referencegrants")
}

// readsOf counts the apiserver's GETs and LISTs of the named resources.
func readsOf(t *testing.T, e *env, resources ...string) int {
	t.Helper()
	r := e.Kubectl("", "get", "--raw", "/metrics")
	if r.Code != 0 {
		t.Fatalf("apiserver metrics: %s", r.Output())
	}
	line := regexp.MustCompile(`^apiserver_request_total\{.*[{,]resource="([^"]*)".*[{,]verb="([^"]*)".*\} (\S+)$`)
	total := 0
	for _, l := range strings.Split(r.Stdout, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil || !slices.Contains(resources, m[1]) || (m[2] != "GET" && m[2] != "LIST") {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		total += int(v)
	}
	return total
}

// hugePod is a Pod with n generic ephemeral volumes; source(i) is the data
// source line of the i-th.
func hugePod(name string, n int, source func(i int) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: busybox}]\n  volumes:\n", name)
	for i := range n {
		fmt.Fprintf(&b, "  - name: v%d\n    ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce], storageClassName: csi-fast, resources: {requests: {storage: 1Gi}}, %s}}}\n", i, source(i))
	}
	return b.String()
}

// One workload review costs the apiserver a bounded number of reads, however
// many templates the workload carries: a large Pod cannot turn into a flood
// of requests, nor run the review past its timeout.
func TestWorkloadReviewReadsAreBounded(t *testing.T) {
	crds := filepath.Join(root, "test", "e2e", "testdata", "crds")
	e := newEnv(t, testenv.Options{CRDPaths: []string{crds}})
	ns := e.namespace(t)
	e.class(t, "csi-fast", "fast.csi.example.com")

	sources := []func(int) string{
		func(i int) string {
			return fmt.Sprintf("dataSource: {kind: PersistentVolumeClaim, name: missing-%d}", i)
		},
		func(i int) string {
			return fmt.Sprintf("dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: missing-%d}", i)
		},
		func(i int) string {
			return fmt.Sprintf("dataSourceRef: {apiGroup: backup.example.com, kind: Backup%d, name: b}", i)
		},
	}
	mixed := hugePod("mixed", 300, func(i int) string { return sources[i%3](i / 3) })
	before := sourceReads(t, e)
	expect(t, e.apply(t, ns, mixed, "--dry-run=server"), 0, "were not judged")
	if got := sourceReads(t, e) - before; got > webhook.MaxLiveReadsPerReview {
		t.Errorf("a Pod of 300 templates, each naming another missing source, cost %d apiserver reads; want at most %d", got, webhook.MaxLiveReadsPerReview)
	} else {
		t.Logf("a Pod of 300 templates naming distinct sources: %d reads", got)
	}

	// Many templates naming one source: it is looked up once.
	same := hugePod("same", 12, func(int) string { return "dataSource: {kind: PersistentVolumeClaim, name: missing}" })
	before = sourceReads(t, e)
	expect(t, e.apply(t, ns, same, "--dry-run=server"), 0, `PersistentVolumeClaim "missing" does not exist`, "!were not judged")
	if got := sourceReads(t, e) - before; got > 1 {
		t.Errorf("a Pod of 12 templates naming one missing claim cost %d apiserver reads; want 1", got)
	}
}
