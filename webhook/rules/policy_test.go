package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestJudge(t *testing.T) {
	size := Finding{RuleCloneSize, field.Invalid(storage, "1Gi", "must be at least 5Gi")}
	missingSrc := Finding{RuleMissingSource, field.Invalid(sourceName, "src", "does not exist")}
	cases := []struct {
		name         string
		policy       Policy
		namespace    string
		findings     []Finding
		wantDenials  field.ErrorList
		wantWarnings []string
	}{{
		name: "denies and warns by the default actions", policy: Policy{}, namespace: "app",
		findings:     []Finding{size, missingSrc},
		wantDenials:  field.ErrorList{size.Err},
		wantWarnings: []string{`spec.dataSource.name: Invalid value: "src": does not exist`},
	}, {
		name: "turns a denial into a warning", policy: Policy{Rules: map[Rule]Action{RuleCloneSize: Warn}}, namespace: "app",
		findings:     []Finding{size},
		wantWarnings: []string{`spec.resources.requests.storage: Invalid value: "1Gi": must be at least 5Gi`},
	}, {
		name: "turns a warning into a denial", policy: Policy{Rules: map[Rule]Action{RuleMissingSource: Deny}}, namespace: "app",
		findings:    []Finding{missingSrc},
		wantDenials: field.ErrorList{missingSrc.Err},
	}, {
		name: "ignores a rule that is off", policy: Policy{Rules: map[Rule]Action{RuleCloneSize: Off}}, namespace: "app",
		findings: []Finding{size},
	}, {
		name: "leaves exempt namespaces alone", policy: Policy{ExemptNamespaces: []string{"backup"}}, namespace: "backup",
		findings: []Finding{size, missingSrc},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := c.policy.Judge(c.namespace, c.findings)
			if diff := cmp.Diff(c.wantDenials, v.Denials); diff != "" {
				t.Errorf("denials (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.wantWarnings, v.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if len(v.Judged) != len(v.Denials)+len(v.Warnings) {
				t.Errorf("judged %d findings, want one per denial and warning (%d)", len(v.Judged), len(v.Denials)+len(v.Warnings))
			}
		})
	}
}

func TestEveryRuleHasADefaultAction(t *testing.T) {
	for rule, action := range DefaultActions {
		if action != Deny && action != Warn {
			t.Errorf("rule %s defaults to %q; defaults are deny or warn", rule, action)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	cases := []struct {
		name    string
		doc     string
		want    *Policy
		wantErr string
	}{{
		name: "an empty file is the default policy", doc: "", want: &Policy{},
	}, {
		name: "reads rules, exempt namespaces and group defaults",
		doc:  "rules:\n  clone-size: warn\n  missing-source: deny\nexemptNamespaces: [backup]\napiGroupDefaults:\n  Backup: backup.example.com\n",
		want: &Policy{
			Rules:            map[Rule]Action{RuleCloneSize: Warn, RuleMissingSource: Deny},
			ExemptNamespaces: []string{"backup"},
			APIGroupDefaults: DefaultAPIGroups{"Backup": "backup.example.com"},
		},
	}, {
		name: "names the line of an unknown rule", doc: "rules:\n  clone-size: warn\n  clone-sise: deny\n",
		wantErr: `line 3: unknown rule "clone-sise"; the rules are: `,
	}, {
		name: "names the line of an unknown action", doc: "rules:\n  clone-size: block\n",
		wantErr: `line 2: action "block" is not one of deny, warn, off`,
	}, {
		name: "names the line of an unknown field", doc: "rules: {}\nexempt: [a]\n",
		wantErr: "line 2: field exempt not found",
	}, {
		name: "names the line of broken YAML", doc: "rules:\n  clone-size: warn\n  x: : y\n",
		wantErr: "line 3: mapping values are not allowed",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePolicy([]byte(c.doc))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, c.wantErr)
				}
				if got != nil {
					t.Errorf("got a policy %+v with the error; a bad file must never be half applied", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("policy (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadPolicyNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("rules:\n  clone-size: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPolicy(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error = %v, want one naming %s and line 2", err, path)
	}
	if _, err := LoadPolicy(filepath.Join(t.TempDir(), "absent.yaml")); err == nil {
		t.Error("a missing policy file loaded without error")
	}
}

func TestGroupsAddsToTheDefaults(t *testing.T) {
	p := Policy{APIGroupDefaults: DefaultAPIGroups{"Backup": "backup.example.com"}}
	want := DefaultAPIGroups{KindSnapshot: SnapshotAPIGroup, "Backup": "backup.example.com"}
	if diff := cmp.Diff(want, p.Groups()); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}
