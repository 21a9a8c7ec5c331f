package csidriver

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"
)

// TestSanity runs the CSI conformance suite (csi-sanity) on the driver: the Identity and
// Controller tests. The Node tests are skipped: no kubelet mounts anything here.
func TestSanity(t *testing.T) {
	dir := t.TempDir()
	d, err := New(Config{StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := filepath.Join(dir, "csi.sock")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx, endpoint, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + endpoint
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	sc := sanity.GinkgoTest(&cfg)
	defer sc.Finalize()

	gomega.RegisterFailHandler(ginkgo.Fail)
	suite, reporter := ginkgo.GinkgoConfiguration()
	suite.SkipStrings = []string{"Node Service"}
	reporter.Succinct = true
	reporter.NoColor = true
	ginkgo.ReportAfterSuite("counts", func(r ginkgo.Report) {
		counts := map[types.SpecState]int{}
		for _, s := range r.SpecReports {
			if s.LeafNodeType == types.NodeTypeIt {
				counts[s.State]++
			}
		}
		t.Logf("csi-sanity: %d passed, %d failed, %d skipped, %d pending",
			counts[types.SpecStatePassed], counts[types.SpecStateFailed], counts[types.SpecStateSkipped], counts[types.SpecStatePending])
	})
	ginkgo.RunSpecs(t, "csi-sanity: "+DefaultName, suite, reporter)
}
