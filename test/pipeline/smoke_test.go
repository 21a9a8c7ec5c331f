// Package pipeline_test is the smoke test of the real cloning pipeline
// (internal/pipeline) with clonegate registered: config/samples' source binds,
// its clone binds with the source's data, and a restore of its snapshot whose
// apiGroup clonegate defaulted binds with the data too.
package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clonegate/clonegate/internal/pipeline"
	"github.com/clonegate/clonegate/internal/testenv"
)

const timeout = 2 * time.Minute

func TestPipelineClonesAndRestoresWithData(t *testing.T) {
	root, _ := filepath.Abs("../..")
	dir := t.TempDir()
	clonegate, err := testenv.BuildClonegate(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	p, err := pipeline.Start(ctx, pipeline.Options{Root: root, Dir: dir, Clonegate: clonegate})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pipeline started in %s; logs in %s", time.Since(start).Round(100*time.Millisecond), dir)
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping the pipeline: %v", err)
		}
	})
	apply := func(sample string) {
		t.Helper()
		if r := p.Kubectl("", "apply", "-f", filepath.Join(root, "config", "samples", sample)); r.Code != 0 {
			t.Fatalf("kubectl apply %s: %s", sample, r.Output())
		}
	}
	bound := func(claim string) string {
		t.Helper()
		path, err := p.WaitBound(ctx, "default", claim, timeout)
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	const data = "the source's data\n"
	hasData := func(claim string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(bound(claim), "data.txt"))
		if err != nil || string(got) != data {
			t.Errorf("%s's volume: data.txt = %q (%v), want the source's %q", claim, got, err, data)
		}
	}

	apply("01-source.yaml")
	if err := os.WriteFile(filepath.Join(bound("source"), "data.txt"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	apply("02-clone.yaml")
	hasData("clone")

	apply("05-snapshot.yaml")
	if err := p.WaitSnapshotReady(ctx, "default", "source-snapshot", timeout); err != nil {
		t.Fatal(err)
	}
	apply("06-restore-no-apigroup.yaml")
	hasData("restore")
	if got := p.Kubectl("", "get", "pvc", "restore", "-o", "jsonpath={.spec.dataSource.apiGroup}").Stdout; got != "snapshot.storage.k8s.io" {
		t.Errorf("restore's apiGroup is %q, want snapshot.storage.k8s.io, defaulted by clonegate", got)
	}
}
