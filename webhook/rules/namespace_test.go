package rules

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestGuardNamespace(t *testing.T) {
	cross := corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "db", Namespace: ptr("victim")}}
	own := claim("1Gi", cloneOf("src"))
	granted := func(Source) (string, error) { return "", nil }
	refused := func(Source) (string, error) {
		return `user "mallory" may not get PersistentVolumeClaim "db" in namespace "victim"`, nil
	}
	boom := errors.New("apiserver unreachable")
	cases := []struct {
		name      string
		spec      corev1.PersistentVolumeClaimSpec
		grant     Grant
		wantJudge bool
		wantRules []Rule
		wantIn    string
		wantErr   error
	}{
		{name: "judges a source in the claim's own namespace", spec: own, wantJudge: true},
		{name: "does not judge a cross-namespace source without a grant", spec: cross, wantRules: []Rule{RuleCrossNamespace}, wantIn: "cross-namespace sources are not allowed"},
		{name: "judges a granted cross-namespace source, dropping the finding", spec: cross, grant: granted, wantJudge: true},
		{name: "says why a refused grant is refused, and does not judge", spec: cross, grant: refused, wantRules: []Rule{RuleCrossNamespace}, wantIn: `may not get PersistentVolumeClaim "db"`},
		{name: "passes a grant check's error on", spec: cross, grant: func(Source) (string, error) { return "", boom }, wantErr: boom},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			findings := MutateSource("attacker", c.spec.DeepCopy(), DefaultGroups).Findings
			got, judge, err := GuardNamespace("attacker", &c.spec, findings, c.grant)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("error = %v, want %v", err, c.wantErr)
			}
			if judge != c.wantJudge {
				t.Errorf("judge = %v, want %v", judge, c.wantJudge)
			}
			var rules []Rule
			for _, f := range got {
				rules = append(rules, f.Rule)
				if c.wantIn != "" && !strings.Contains(f.Err.Detail, c.wantIn) {
					t.Errorf("finding %q lacks %q", f.Err.Detail, c.wantIn)
				}
			}
			if len(rules) != len(c.wantRules) || (len(rules) > 0 && rules[0] != c.wantRules[0]) {
				t.Errorf("rules = %v, want %v", rules, c.wantRules)
			}
		})
	}
}
