package rules

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Template is a claim a workload will create: a StatefulSet's
// volumeClaimTemplate or a Pod's generic ephemeral volume. Its claims are
// created later by a controller, whose events nobody reads; judging the
// template when the workload is created lets its author hear the mistake.
type Template struct {
	Path *field.Path // where the template's claim spec sits, e.g. spec.volumeClaimTemplates[0].spec
	Name string      // the template's name: the claim template's or the volume's
	Spec *corev1.PersistentVolumeClaimSpec
}

// StatefulSetTemplates returns the claim templates of a StatefulSet, and the
// ephemeral volumes of its pod template.
func StatefulSetTemplates(sts *appsv1.StatefulSet) []Template {
	var out []Template
	for i := range sts.Spec.VolumeClaimTemplates {
		t := &sts.Spec.VolumeClaimTemplates[i]
		out = append(out, Template{Path: claimTemplatesPath.Index(i).Child("spec"), Name: t.Name, Spec: &t.Spec})
	}
	return append(out, PodTemplates(podTemplateSpecPath, &sts.Spec.Template.Spec)...)
}

// Paths are never changed (Child and Index make new ones): these are shared.
var (
	claimTemplatesPath  = field.NewPath("spec", "volumeClaimTemplates")
	podTemplateSpecPath = field.NewPath("spec", "template", "spec")
)

// PodTemplates returns the generic ephemeral volumes of a pod spec found at
// path (spec for a Pod, spec.template.spec for a workload's pod template).
func PodTemplates(path *field.Path, pod *corev1.PodSpec) []Template {
	var out []Template
	for i := range pod.Volumes {
		v := &pod.Volumes[i]
		if v.Ephemeral == nil || v.Ephemeral.VolumeClaimTemplate == nil {
			continue
		}
		out = append(out, Template{
			// One element for three names: printed the same, one allocation.
			Path: path.Child("volumes").Index(i).Child("ephemeral.volumeClaimTemplate.spec"),
			Name: v.Name,
			Spec: &v.Ephemeral.VolumeClaimTemplate.Spec,
		})
	}
	return out
}

// ValidateTemplate judges a claim template of a workload in namespace with
// the rules of both webhooks: what the mutating webhook checks (a
// cross-namespace source) and what the validating webhook checks against the
// source. facts is asked about the template's spec after apiGroup defaulting.
// The findings' paths point into the workload. A source in another namespace
// is judged (and facts asked about it) only when grant allows it: otherwise
// the cross-namespace finding is the whole answer (see GuardNamespace).
//
// Unlike a claim, a template whose non-claim source has no apiGroup is
// rejected by the apiserver itself ("must be 'PersistentVolumeClaim' when
// referencing the default apiGroup", measured on v1.37 with the
// CrossNamespaceVolumeDataSource gate off and on), so nothing is lost: the
// webhook never sees one, and `clonegate check` reports it as the apiserver
// would, before judging the source as if the group were set.
func ValidateTemplate(namespace string, t Template, groups DefaultAPIGroups, grant Grant, facts func(*corev1.PersistentVolumeClaimSpec) (Facts, error)) ([]Finding, error) {
	if _, ok := SourceOf(namespace, t.Spec); !ok {
		return nil, nil
	}
	spec := SourcesCopy(t.Spec)
	out := templateGroups(spec)
	rejected := len(out) > 0
	for _, f := range MutateSource(namespace, spec, groups).Findings {
		// A template without apiGroup is rejected, not dropped: templateGroups
		// said so. Other shapes the apiserver drops (a claim with apiGroup v1,
		// a populator in dataSource) pass the workload's validation, and each
		// claim created from the template would be emptied: say so now.
		if f.Rule != RuleDroppedSource || !rejected {
			out = append(out, f)
		}
	}
	out, judge, err := GuardNamespace(namespace, spec, out, grant)
	if err != nil {
		return nil, err
	}
	if !judge {
		return At(t.Path, out), nil
	}
	fs, err := facts(spec)
	if err != nil {
		return nil, err
	}
	out = append(out, ValidateSource(namespace, spec, fs)...)
	return At(t.Path, out), nil
}

// templateGroups reports sources other than a claim that name no apiGroup.
func templateGroups(spec *corev1.PersistentVolumeClaimSpec) []Finding {
	var out []Finding
	check := func(path *field.Path, group *string, kind string) {
		if (group != nil && *group != "") || kind == KindClaim {
			return
		}
		want := "the group that serves " + kind
		if kind == KindSnapshot {
			want = SnapshotAPIGroup
		}
		out = append(out, finding(RuleTemplateAPIGroup, path.Child("apiGroup"), "", fmt.Sprintf(
			"a %s source needs an apiGroup in a claim template: the apiserver rejects the workload without one; set %s to %s",
			kind, path.Child("apiGroup"), want)))
	}
	if ds := spec.DataSource; ds != nil {
		check(dataSourcePath, ds.APIGroup, ds.Kind)
	}
	if ref := spec.DataSourceRef; ref != nil && !(spec.DataSource != nil && spec.DataSource.Kind == ref.Kind && spec.DataSource.Name == ref.Name) {
		check(dataSourceRefPath, ref.APIGroup, ref.Kind)
	}
	return out
}

// At rebases findings about a claim's spec (paths and messages that begin at
// "spec.") onto path, where the spec sits inside a workload. The findings
// given are not changed.
func At(path *field.Path, findings []Finding) []Finding {
	if len(findings) == 0 {
		return findings
	}
	out := make([]Finding, len(findings))
	for i, f := range findings {
		e := *f.Err
		e.Field = rebase(path.String(), e.Field)
		e.Detail = rebase(path.String(), e.Detail)
		out[i] = Finding{Rule: f.Rule, Err: &e}
	}
	return out
}

// rebase replaces each field path in s that starts a word with "spec" by one
// that starts with prefix: "set spec.volumeMode to Block" becomes "set
// spec.volumeClaimTemplates[0].spec.volumeMode to Block".
func rebase(prefix, s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], "spec")
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		j += i
		end := j + len("spec")
		startsWord := j == 0 || strings.IndexByte(" (\"'`", s[j-1]) >= 0
		endsPath := end == len(s) || s[end] == '.' || s[end] == '['
		b.WriteString(s[i:j])
		if startsWord && endsPath {
			b.WriteString(prefix)
		} else {
			b.WriteString("spec")
		}
		i = end
	}
	return b.String()
}
