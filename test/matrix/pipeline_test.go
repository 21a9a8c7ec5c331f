package matrix

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/internal/pipeline"
	"github.com/clonegate/clonegate/internal/testenv"
)

// startPipeline starts the real pipeline (internal/pipeline) with clonegate registered and
// serving, logging JSON so that the rows can read which rule said what. Gate "on" turns
// CrossNamespaceVolumeDataSource on in every component that has it. It stops when t ends.
func startPipeline(t *testing.T, gate string) *cluster {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: the components' logs are kept when the test fails.
	dir, err := os.MkdirTemp("", "clonegate-matrix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the pipeline's logs are in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	clonegate, err := testenv.BuildClonegate(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	o := pipeline.Options{Root: root, Dir: dir, Clonegate: clonegate, ClonegateArgs: []string{"--log-format=json"},
		Bin: os.Getenv("CLONEGATE_PIPELINE_BIN")}
	if gate == "on" {
		o.FeatureGates = "CrossNamespaceVolumeDataSource=true"
		// external-provisioner watches ReferenceGrants when the gate is on, and waits for the API.
		o.CRDPaths = []string{filepath.Join(root, "test", "e2e", "testdata", "crds", "gateway.networking.k8s.io_referencegrants.yaml")}
	}
	p, err := pipeline.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping the pipeline: %v", err)
		}
	})

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = admissionv1.AddToScheme(scheme)
	cfg := rest.CopyConfig(p.Env.Config)
	cfg.QPS, cfg.Burst = 500, 1000 // every row polls at once
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{kubectl: p.Kubectl, client: cl, gate: gate, log: p.Server.Log.String}
}
