package e2e

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	offline "github.com/clonegate/clonegate/internal/check"
)

// The offline gate and the webhooks must agree: `clonegate check` on a
// fixture denies exactly what `kubectl apply --dry-run=server` of the same
// objects is refused, with the sources applied first as CI's cluster has them.
func TestCheckAgreesWithTheWebhook(t *testing.T) {
	dir := filepath.Join(root, "test", "e2e", "testdata", "check")
	sources, claims := filepath.Join(dir, "sources.yaml"), filepath.Join(dir, "claims.yaml")
	wantDenied := []string{"PersistentVolumeClaim/borrowed", "PersistentVolumeClaim/small", "Pod/scratch-small", "StatefulSet/db-small"}
	eachGate(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		expect(t, e.Kubectl("", "apply", "-n", ns, "-f", sources), 0, "persistentvolumeclaim/src created")

		cmd := exec.Command(clonegate, "check", "-o", "json", "--namespace", ns, "-f", dir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
			t.Fatalf("clonegate check: %v, want exit code 1; stderr:\n%s", err, stderr.String())
		}
		var findings []offline.Finding
		if err := json.Unmarshal(stdout.Bytes(), &findings); err != nil {
			t.Fatalf("clonegate check -o json: %v\n%s", err, stdout.String())
		}
		checkDenied := map[string]bool{}
		for _, f := range findings {
			if f.Action == "deny" {
				checkDenied[f.Kind+"/"+f.Name] = true
			}
		}

		objs, err := offline.Load([]string{claims}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var serverDenied, offlineDenied []string
		for _, o := range objs {
			id := o.GetKind() + "/" + o.GetName()
			manifest, err := json.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			r := e.Kubectl(string(manifest), "apply", "-n", ns, "--dry-run=server", "-f", "-")
			if r.Code != 0 {
				serverDenied = append(serverDenied, id)
			}
			if checkDenied[id] {
				offlineDenied = append(offlineDenied, id)
			}
			if (r.Code != 0) != checkDenied[id] {
				t.Errorf("%s: kubectl apply --dry-run=server exit %d, clonegate check denied %v; kubectl said:\n%s", id, r.Code, checkDenied[id], r.Output())
			}
		}
		sort.Strings(serverDenied)
		sort.Strings(offlineDenied)
		if diff := cmp.Diff(wantDenied, serverDenied); diff != "" {
			t.Errorf("denied by the webhooks (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(wantDenied, offlineDenied); diff != "" {
			t.Errorf("denied by clonegate check (-want +got):\n%s", diff)
		}
	})
}
