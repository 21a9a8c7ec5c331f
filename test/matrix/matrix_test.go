// Package matrix is the agreement matrix: every scenario of rows_test.go runs in the real
// pipeline (kube-apiserver, kube-controller-manager, external-provisioner, snapshot-controller,
// csi-snapshotter and the test CSI driver) twice: without clonegate registered, to see what
// Kubernetes alone does, and with it, to see what clonegate answers at apply. The test asserts
// that the two agree: clonegate never denies what the pipeline provisions with the source's data,
// and says something (denies or warns) about everything that would end empty or Pending.
//
// CLONEGATE_MATRIX_WRITE=1 (make matrix) writes the table into docs/agreement-matrix.md and the
// README; CLONEGATE_MATRIX_ROWS=regexp runs the rows (id/gate) it matches.
package matrix

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const minute = time.Minute

// settleTimeout bounds how long a claim may take to become what its row expects. A claim
// expected Pending without a telling event waits all of it.
const settleTimeout = 40 * time.Second

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// run is one row in one pipeline: its outcome without clonegate and with it.
type run struct {
	row      row
	gate     string
	without  outcome
	with     outcome
	problems []string
}

func TestAgreementMatrix(t *testing.T) {
	start := time.Now()
	var runs []*run
	only, err := regexp.Compile(os.Getenv("CLONEGATE_MATRIX_ROWS")) // a subset while working on one row
	if err != nil {
		t.Fatalf("CLONEGATE_MATRIX_ROWS: %v", err)
	}
	for _, gate := range []string{"off", "on"} {
		var mine []*run
		for _, r := range rows {
			if contains(r.gates, gate) && only.MatchString(r.id+"/"+gate) {
				mine = append(mine, &run{row: r, gate: gate})
			}
		}
		if len(mine) == 0 {
			continue
		}
		gateStart := time.Now()
		c := startPipeline(t, gate)
		if err := fixtures(c); err != nil {
			t.Fatalf("gate %s: cluster fixtures: %v", gate, err)
		}
		if err := registerClonegate(c, false); err != nil {
			t.Fatalf("gate %s: unregistering clonegate: %v", gate, err)
		}
		phase(t, c, mine, "without")
		if err := registerClonegate(c, true); err != nil {
			t.Fatalf("gate %s: registering clonegate: %v", gate, err)
		}
		phase(t, c, mine, "with")
		t.Logf("gate %s: %d rows in %s", gate, len(mine), time.Since(gateStart).Round(time.Second))
		runs = append(runs, mine...)
	}
	for _, r := range runs {
		r.problems = append(r.problems, checkExpectations(r)...)
		r.problems = append(r.problems, checkAgreement(r)...)
		for _, p := range r.problems {
			if r.row.known != "" {
				t.Logf("known (%s): %s (gate %s): %s", r.row.known, r.row.id, r.gate, p)
				continue
			}
			t.Errorf("%s (gate %s): %s", r.row.id, r.gate, p)
		}
	}
	table := render(runs)
	t.Logf("agreement matrix (%s):\n%s", time.Since(start).Round(time.Second), table)
	if os.Getenv("CLONEGATE_MATRIX_WRITE") != "" {
		if t.Failed() {
			t.Fatal("CLONEGATE_MATRIX_WRITE: a failing matrix is not written")
		}
		if only.String() != "" {
			t.Fatalf("CLONEGATE_MATRIX_WRITE writes the whole matrix: unset CLONEGATE_MATRIX_ROWS")
		}
		if err := write(table, time.Since(start)); err != nil {
			t.Fatal(err)
		}
	}
}

// phase runs every row in parallel, each in a namespace of its own.
func phase(t *testing.T, c *cluster, runs []*run, name string) {
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &scenario{ctx: context.Background(), c: c, ns: r.row.id + "-" + name}
			expect := r.row.without
			if name == "with" {
				expect = r.row.with
			}
			o, err := play(s, r.row, expect)
			if err != nil {
				r.problems = append(r.problems, fmt.Sprintf("%s clonegate: %v", name, err))
			}
			if name == "with" {
				r.with = o
			} else {
				r.without = o
			}
		}()
	}
	wg.Wait()
}

// play sets a row up in its namespace, applies the claim under test and waits for it to settle.
func play(s *scenario, r row, expect want) (outcome, error) {
	if err := s.namespace(); err != nil {
		return outcome{}, err
	}
	if strings.Contains(r.id, "cross-ns") {
		other := &scenario{ctx: s.ctx, c: s.c, ns: s.ns + "-src"}
		if err := other.namespace(); err != nil {
			return outcome{}, err
		}
	}
	if r.setup != nil {
		if err := r.setup(s); err != nil {
			return outcome{}, fmt.Errorf("setup: %w", err)
		}
	}
	pvc := r.claim(s)
	hadSource := pvc.Spec.DataSource != nil || pvc.Spec.DataSourceRef != nil
	o, err := s.apply(pvc)
	if err != nil {
		return o, err
	}
	o.findings = s.findings()
	if o.result == denied || len(o.warnings) > 0 {
		// clonegate logs before it answers, but its log reaches us through a pipe: wait for it.
		_ = wait.PollUntilContextTimeout(s.ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			o.findings = s.findings()
			return len(o.findings) > 0, nil
		})
	}
	if o.result == rejected || o.result == denied {
		return o, nil
	}
	if r.consume {
		if err := s.schedule(claimName); err != nil {
			return o, err
		}
	}
	err = s.settle(&o, expect, hadSource, settleTimeout)
	o.findings = s.findings()
	return o, err
}

// checkExpectations compares a run with what its row expects.
func checkExpectations(r *run) []string {
	var out []string
	for _, p := range []struct {
		phase string
		got   outcome
		want  want
	}{{"without clonegate", r.without, r.row.without}, {"with clonegate", r.with, r.row.with}} {
		w := p.want
		if ow := r.row.override(r.gate, p.phase); ow != nil {
			w = *ow
		}
		if p.got.result != w.result {
			out = append(out, fmt.Sprintf("%s: got %s, want %s (%s%s)", p.phase, p.got.cell(), w, p.got.verdict(), p.got.message))
			continue
		}
		if w.event != "" && p.got.result == pending && !strings.Contains(p.got.event, w.event) {
			out = append(out, fmt.Sprintf("%s: Pending with event %q, want one with %q", p.phase, p.got.event, w.event))
		}
		if p.phase != "with clonegate" {
			continue
		}
		switch {
		case w.result == denied && !contains(p.got.rules("deny"), w.rule):
			out = append(out, fmt.Sprintf("denied by %v, want by %s: %s", p.got.rules("deny"), w.rule, p.got.message))
		case w.warning != "" && !anyContains(p.got.warnings, w.warning):
			out = append(out, fmt.Sprintf("warnings %v, want one saying %q", p.got.warnings, w.warning))
		case w.result != denied && w.rule != "" && !contains(p.got.rules("warn"), w.rule):
			out = append(out, fmt.Sprintf("warned %v (%v), want a warning from %s", p.got.rules("warn"), p.got.warnings, w.rule))
		case w.result != denied && w.rule == "" && w.warning == "" && p.got.warned():
			out = append(out, fmt.Sprintf("admitted with findings %v and warnings %v, want none", p.got.findings, p.got.warnings))
		}
	}
	return out
}

// checkAgreement holds whatever the rows expect: the reason the matrix exists.
func checkAgreement(r *run) []string {
	var out []string
	without, with := r.without.result, r.with.result
	if without == boundData && with == denied && r.row.byPolicy == "" {
		out = append(out, "FALSE DENIAL: Kubernetes alone provisions it with the source's data, clonegate denies it: "+r.with.message)
	}
	if (without == boundEmpty || without == pending) && !r.with.warned() {
		out = append(out, fmt.Sprintf("SILENT: without clonegate it ends %s, and clonegate admits it without a word", r.without.cell()))
	}
	if with == boundEmpty {
		out = append(out, "DATA LOSS: admitted by clonegate and provisioned empty")
	}
	if (with == pending || with == bound) && !r.with.warned() && r.row.claimHasSource() {
		out = append(out, fmt.Sprintf("admitted without a word, then %s", r.with.cell()))
	}
	return out
}

func anyContains(xs []string, sub string) bool {
	for _, x := range xs {
		if strings.Contains(x, sub) {
			return true
		}
	}
	return false
}

func (r row) claimHasSource() bool {
	c := r.claim(&scenario{ns: "x"})
	return c.Spec.DataSource != nil || c.Spec.DataSourceRef != nil
}

// override is a row's expectation for one gate when it differs from the default.
func (r row) override(gate, phase string) *want {
	if gate != "on" {
		return nil
	}
	if phase == "without clonegate" {
		return r.withoutGateOn
	}
	return r.withGateOn
}

// render prints the matrix as a Markdown table a person can read.
func render(runs []*run) string {
	sort.SliceStable(runs, func(i, j int) bool { return order(runs[i].row.id) < order(runs[j].row.id) })
	var b strings.Builder
	b.WriteString("| scenario | rule | gate | Kubernetes alone | with clonegate | then |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range runs {
		then := "—"
		if r.with.result != denied && r.with.result != rejected {
			then = r.with.cell()
		}
		rule := r.row.rule
		if rule == "" {
			rule = "—"
		} else {
			rule = "`" + rule + "`"
		}
		verdict := r.with.verdict()
		if r.row.byPolicy != "" {
			verdict += " (" + r.row.byPolicy + ")"
		}
		if len(r.problems) > 0 {
			verdict += " **✗**"
			if r.row.known != "" {
				verdict += " (" + r.row.known + ")"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.row.name, rule, r.gate, r.without.cell(), verdict, then)
	}
	return b.String()
}

func order(id string) int {
	for i, r := range rows {
		if r.id == id {
			return i
		}
	}
	return len(rows)
}

const (
	readmeBegin = "<!-- agreement-matrix:begin (generated by make matrix) -->"
	readmeEnd   = "<!-- agreement-matrix:end -->"
)

// write puts the table into docs/agreement-matrix.md and the README's matrix section.
func write(table string, took time.Duration) error {
	doc := "# Agreement matrix\n\n" +
		"Generated by `make matrix` (the test `TestAgreementMatrix` in `test/matrix`, run by `make test`);\n" +
		"do not edit by hand. Every scenario runs in the real pipeline: kube-apiserver, kube-controller-manager\n" +
		"(volume controllers), external-provisioner, snapshot-controller, csi-snapshotter and the test CSI driver\n" +
		"`" + driver + "` (test/csidriver). First without clonegate registered (*Kubernetes alone*), then with it\n" +
		"(*with clonegate*: what `kubectl create` answered; *then*: what became of a claim it admitted).\n\n" +
		"- *Bound, source's data*: a file written into the source volume is in the new volume.\n" +
		"- *Bound, EMPTY*: provisioned without it (the apiserver dropped the source).\n" +
		"- *Pending (…)*: still Pending when the row settled, with the claim's telling event.\n\n" +
		"The test fails on a false denial (Kubernetes alone provisions it with the data, clonegate denies it),\n" +
		"on a claim that ends empty or Pending without a word from clonegate, and on an admitted claim that\n" +
		"ends empty. **✗** marks a row that breaks one of these; *(issue N)* says it is known and tracked.\n" +
		fmt.Sprintf("This run took %s.\n\n", took.Round(time.Second)) + table
	if err := os.WriteFile("../../docs/agreement-matrix.md", []byte(doc), 0o644); err != nil {
		return err
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		return err
	}
	before, rest, ok1 := strings.Cut(string(readme), readmeBegin)
	_, after, ok2 := strings.Cut(rest, readmeEnd)
	if !ok1 || !ok2 {
		return fmt.Errorf("README.md lacks the %q … %q markers", readmeBegin, readmeEnd)
	}
	return os.WriteFile("../../README.md", []byte(before+readmeBegin+"\n"+table+readmeEnd+after), 0o644)
}

// fixtures creates what every row shares: the StorageClasses, VolumeSnapshotClasses and a Node.
func fixtures(c *cluster) error {
	ctx := context.Background()
	r := c.kubectl(fixtureYAML(c), "apply", "-f", "-")
	if r.Code != 0 {
		return fmt.Errorf("%s", r.Output())
	}
	// A default StorageClass for the driver, unless the pipeline made one already.
	out := c.kubectl("", "get", "storageclass", "-o",
		`jsonpath={range .items[?(@.metadata.annotations.storageclass\.kubernetes\.io/is-default-class=="true")]}{.provisioner}{"\n"}{end}`)
	if out.Code != 0 {
		return fmt.Errorf("%s", out.Output())
	}
	if !strings.Contains(out.Stdout, driver) {
		if r := c.kubectl("", "annotate", "storageclass", classImmediate, "storageclass.kubernetes.io/is-default-class=true", "--overwrite"); r.Code != 0 {
			return fmt.Errorf("%s", r.Output())
		}
	}
	n := &corev1.Node{}
	n.Name = node
	return client.IgnoreAlreadyExists(c.client.Create(ctx, n))
}

func fixtureYAML(*cluster) string {
	return `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ` + classImmediate + `}
provisioner: ` + driver + `
allowVolumeExpansion: true
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ` + classWFFC + `}
provisioner: ` + driver + `
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ` + classRound + `}
provisioner: ` + driver + `
parameters: {roundUp: 1Gi}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ` + classOther + `}
provisioner: other.example.com
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: ` + snapClass + `}
driver: ` + driver + `
deletionPolicy: Delete
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: ` + snapClassSlow + `}
driver: ` + driver + `
deletionPolicy: Delete
parameters: {readyToUse: "false"}
`
}
