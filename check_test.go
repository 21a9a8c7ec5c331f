package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	offline "github.com/clonegate/clonegate/internal/check"
)

const td = "internal/check/testdata/"

func TestCheckCommand(t *testing.T) {
	// Lines are those of the field each finding names.
	pending := func(file, line, name string) string {
		return file + `:` + line + ` PersistentVolumeClaim default/` + name + `: warning [source-not-bound] spec.dataSource.name: Invalid value: "src": source PersistentVolumeClaim "src" is Pending, not Bound; the clone stays Pending until the source is bound to a volume`
	}
	small := func(file, line, ns, name string) string {
		return file + `:` + line + ` PersistentVolumeClaim ` + ns + `/` + name + `: denied [clone-size] spec.resources.requests.storage: Invalid value: "1Gi": must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`
	}
	undersized, _ := os.ReadFile(td + "undersized/clone.yaml")
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("rules:\n  clone-size: warn\n  source-not-bound: off\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPolicy := filepath.Join(t.TempDir(), "bad-policy.yaml")
	if err := os.WriteFile(badPolicy, []byte("rules:\n  clone-sise: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout []string // lines
		stderr string   // a substring
	}{{
		name: "admits a clone as large as its source, warning that the source is not bound yet",
		args: []string{"-f", td + "good"}, code: 0,
		stdout: []string{pending(td+"good/clone.yaml", "7", "clone")},
		stderr: "3 objects, 1 claim with a data source: 0 denied, 1 warning",
	}, {
		name: "denies an undersized clone whose source is in another file of the directory",
		args: []string{"-f", td + "undersized"}, code: 1,
		stdout: []string{pending(td+"undersized/clone.yaml", "8", "small"), small(td+"undersized/clone.yaml", "9", "default", "small")},
		stderr: "1 denied, 1 warning",
	}, {
		name: "walks directories recursively, skipping hidden ones, other files and documents without kind",
		args: []string{td + "tree"}, code: 1,
		stdout: []string{pending(td+"tree/apps/clone.yml", "8", "nested"), small(td+"tree/apps/clone.yml", "9", "default", "nested")},
	}, {
		name: "denies a cross-namespace source",
		args: []string{"-f", td + "cross-namespace.yaml"}, code: 1,
		stdout: []string{td + `cross-namespace.yaml:8 PersistentVolumeClaim team-b/borrowed: denied [cross-namespace-source] spec.dataSourceRef.namespace: Invalid value: "team-a": the claim is in namespace "team-b" but its source PersistentVolumeClaim "src" is in namespace "team-a"; cross-namespace sources are not allowed: create the claim in "team-a", or copy the source into "team-b" (a snapshot or clone there) and drop spec.dataSourceRef.namespace`},
	}, {
		name: "notes a defaulted snapshot apiGroup, then judges the restore against the snapshot and its content",
		args: []string{"-f", td + "snapshot-no-group.yaml"}, code: 1,
		stdout: []string{
			td + `snapshot-no-group.yaml:31 PersistentVolumeClaim default/restored: warning [api-group-default] spec.dataSource.apiGroup: defaulted to "snapshot.storage.k8s.io" for kind VolumeSnapshot: without it the apiserver drops the data source and the volume would be provisioned empty`,
			td + `snapshot-no-group.yaml:32 PersistentVolumeClaim default/restored: denied [restore-size] spec.resources.requests.storage: Invalid value: "1Gi": must be at least 5Gi, the restoreSize of VolumeSnapshot "nightly"; request 5Gi or more`,
			td + `snapshot-no-group.yaml:30 PersistentVolumeClaim default/restored: denied [driver-mismatch] spec.storageClassName: Invalid value: "csi-fast": VolumeSnapshot "nightly" was taken by CSI driver "slow.csi.example.com", but StorageClass "csi-fast" provisions with "fast.csi.example.com"; only the same driver can copy the data: use a StorageClass whose provisioner is the source's driver`,
			td + `snapshot-no-group.yaml:40 PersistentVolumeClaim default/elsewhere: warning [api-group-default] spec.dataSource.apiGroup: defaulted to "snapshot.storage.k8s.io" for kind VolumeSnapshot: without it the apiserver drops the data source and the volume would be provisioned empty`,
		},
	}, {
		name: "denies every data source the apiserver would drop, with its fix",
		args: []string{"-f", td + "dropped.yaml"}, code: 1,
		stdout: []string{
			td + `dropped.yaml:9 PersistentVolumeClaim default/clone-v1: denied [dropped-source] spec.dataSource.apiGroup: Invalid value: "v1": the apiserver keeps a dataSource only as a PersistentVolumeClaim (core group) or a VolumeSnapshot (snapshot.storage.k8s.io) and would silently drop this one, provisioning an empty volume instead of your data: a PersistentVolumeClaim is in the core group: remove apiGroup`,
			td + `dropped.yaml:23 PersistentVolumeClaim default/populated: denied [dropped-source] spec.dataSource.kind: Invalid value: "Backup": the apiserver keeps a dataSource only as a PersistentVolumeClaim (core group) or a VolumeSnapshot (snapshot.storage.k8s.io) and would silently drop this one, provisioning an empty volume instead of your data: a populator belongs in dataSourceRef: move this source to spec.dataSourceRef, with the apiGroup that serves Backup`,
		},
	}, {
		name: "says nothing of a source that is not among the manifests",
		args: []string{"-f", td + "missing-source.yaml"}, code: 0,
		stderr: "1 object, 1 claim with a data source: 0 denied, 0 warnings",
	}, {
		name: "denies a StatefulSet whose claim template clones a larger claim, naming the template field",
		args: []string{"-f", td + "statefulset.yaml"}, code: 1,
		stdout: []string{td + `statefulset.yaml:29 StatefulSet db/pg: denied [clone-size] spec.volumeClaimTemplates[0].spec.resources.requests.storage: Invalid value: "1Gi": must be at least 10Gi, the size of source PersistentVolumeClaim "golden"; request 10Gi or more`},
	}, {
		name: "reads a List in JSON and the ephemeral volumes of a Deployment",
		args: []string{"-f", td + "list.json"}, code: 1,
		stdout: []string{td + `list.json:11 Deployment web/cache: denied [volume-mode] spec.template.spec.volumes[0].ephemeral.volumeClaimTemplate.spec.volumeMode: Invalid value: "Block": source PersistentVolumeClaim "seed" has volumeMode Filesystem; a clone must have the same mode: set spec.template.spec.volumes[0].ephemeral.volumeClaimTemplate.spec.volumeMode to Filesystem`},
	}, {
		name: "reads stdin as -, with the namespace given, beside a file",
		args: []string{"-f", "-", "-n", "apps", "-f", td + "good/source.yaml"}, stdin: string(undersized), code: 1,
		stdout: []string{
			`-:8 PersistentVolumeClaim apps/small: warning [source-not-bound] spec.dataSource.name: Invalid value: "src": source PersistentVolumeClaim "src" is Pending, not Bound; the clone stays Pending until the source is bound to a volume`,
			small("-", "9", "apps", "small"),
		},
	}, {
		name: "a policy file turns a denial into a warning and a warning off",
		args: []string{"--policy", policy, "-f", td + "undersized"}, code: 0,
		stdout: []string{`internal/check/testdata/undersized/clone.yaml:9 PersistentVolumeClaim default/small: warning [clone-size] spec.resources.requests.storage: Invalid value: "1Gi": must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`},
	}, {
		name: "exits 2 on invalid YAML, naming the file, document and line",
		args: []string{"-f", td + "good", "-f", td + "bad.yaml"}, code: 2,
		stderr: "clonegate check: " + td + "bad.yaml:2: invalid YAML: line 9: mapping values are not allowed in this context\n",
	}, {
		name: "exits 2 on a missing file", args: []string{"-f", td + "nope.yaml"}, code: 2,
		stderr: "clonegate check: " + td + "nope.yaml: no such file or directory\n",
	}, {
		name: "exits 2 on a quantity that is no quantity", args: []string{"-f", "-"}, code: 2,
		stdin:  "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: x}\nspec: {resources: {requests: {storage: lots}}}\n",
		stderr: "clonegate check: -:1: PersistentVolumeClaim x: quantities must match the regular expression",
	}, {
		name: "exits 2 on a bad policy file", args: []string{"--policy", badPolicy, "-f", td + "good"}, code: 2,
		stderr: `line 2: unknown rule "clone-sise"`,
	}, {
		name: "exits 2 without input", args: nil, code: 2, stderr: "no manifests given",
	}, {
		name: "exits 2 on an unknown output format", args: []string{"-o", "yaml", td + "good"}, code: 2, stderr: `-o "yaml": must be one of text, json, sarif, github, junit`,
	}, {
		name: "exits 2 on an unknown flag", args: []string{"--frobnicate", td + "good"}, code: 2, stderr: "clonegate check: unknown flag: --frobnicate\nRun 'clonegate check --help' for usage.\n",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"check"}, c.args...), strings.NewReader(c.stdin), &stdout, &stderr)
			if code != c.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			var lines []string
			if s := strings.TrimSuffix(stdout.String(), "\n"); s != "" {
				lines = strings.Split(s, "\n")
			}
			if diff := cmp.Diff(c.stdout, lines); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, stderr.String())
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", "-o", "json", td + "undersized"}, nil, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit code %d, want 1; stderr:\n%s", code, stderr.String())
	}
	var got []offline.Finding
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not a JSON array of findings: %v\n%s", err, stdout.String())
	}
	file := td + "undersized/clone.yaml"
	want := []offline.Finding{{
		File: file, Doc: 1, Line: 8, Column: 45, Kind: "PersistentVolumeClaim", Namespace: "default", Name: "small", Rule: "source-not-bound", Action: "warn",
		Field: "spec.dataSource.name", Message: `Invalid value: "src": source PersistentVolumeClaim "src" is Pending, not Bound; the clone stays Pending until the source is bound to a volume`,
	}, {
		File: file, Doc: 1, Line: 9, Column: 26, Kind: "PersistentVolumeClaim", Namespace: "default", Name: "small", Rule: "clone-size", Action: "deny",
		Field: "spec.resources.requests.storage", Message: `Invalid value: "1Gi": must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`,
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	if stderr.Len() != 0 {
		t.Errorf("-o json wrote to stderr: %s", stderr.String())
	}
	// No findings is an empty array, not null.
	stdout.Reset()
	if code := run([]string{"check", "-o", "json", td + "missing-source.yaml"}, nil, &stdout, &stderr); code != 0 || stdout.String() != "[]\n" {
		t.Errorf("no findings: exit %d, stdout %q; want 0 and []", code, stdout.String())
	}
}
