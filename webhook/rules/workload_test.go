package rules

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestValidateTemplate(t *testing.T) {
	at := field.NewPath("spec", "volumeClaimTemplates").Index(0).Child("spec")
	cases := []struct {
		name  string
		spec  corev1.PersistentVolumeClaimSpec
		facts Facts
		want  []Finding
	}{{
		name:  "says nothing of a template without a source",
		spec:  claim("1Gi"),
		facts: cluster(bound("5Gi", "5Gi")),
	}, {
		name:  "admits a template as large as its source",
		spec:  claim("5Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi")),
	}, {
		name:  "rejects an undersized clone with the template's path",
		spec:  claim("1Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi")),
		want: []Finding{{RuleCloneSize, field.Invalid(at.Child("resources", "requests", "storage"), "1Gi",
			`must be at least 5Gi, the size of source PersistentVolumeClaim "src"; request 5Gi or more`)}},
	}, {
		name:  "rebases the paths in the message too",
		spec:  claim("5Gi", cloneOf("src")),
		facts: cluster(bound("5Gi", "5Gi", func(c *corev1.PersistentVolumeClaim) { block(&c.Spec) })),
		want: []Finding{{RuleVolumeMode, field.Invalid(at.Child("volumeMode"), "Filesystem",
			`source PersistentVolumeClaim "src" has volumeMode Block; a clone must have the same mode: set spec.volumeClaimTemplates[0].spec.volumeMode to Block`)}},
	}, {
		name:  "denies a cross-namespace source, which the apiserver keeps in a template",
		spec:  corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "src", Namespace: ptr("team-a")}},
		facts: Facts{},
		want: []Finding{{RuleCrossNamespace, field.Invalid(at.Child("dataSourceRef", "namespace"), "team-a",
			`the claim is in namespace "ns" but its source PersistentVolumeClaim "src" is in namespace "team-a"; cross-namespace sources are not allowed: create the claim in "team-a", or copy the source into "ns" (a snapshot or clone there) and drop spec.volumeClaimTemplates[0].spec.dataSourceRef.namespace`)}},
	}, {
		name: "rejects a snapshot without apiGroup, then judges it as a snapshot",
		spec: claim("1Gi", func(s *corev1.PersistentVolumeClaimSpec) {
			s.DataSource = &corev1.TypedLocalObjectReference{Kind: KindSnapshot, Name: "nightly"}
		}),
		facts: Facts{SnapshotsServed: true, Snapshot: &Snapshot{ReadyToUse: true, RestoreSize: ptr(resource.MustParse("5Gi"))}},
		want: []Finding{
			{RuleTemplateAPIGroup, field.Invalid(at.Child("dataSource", "apiGroup"), "",
				`a VolumeSnapshot source needs an apiGroup in a claim template: the apiserver rejects the workload without one; set spec.volumeClaimTemplates[0].spec.dataSource.apiGroup to snapshot.storage.k8s.io`)},
			{RuleRestoreSize, field.Invalid(at.Child("resources", "requests", "storage"), "1Gi",
				`must be at least 5Gi, the restoreSize of VolumeSnapshot "nightly"; request 5Gi or more`)},
		},
	}, {
		name: "rejects a populator kind without apiGroup once, not as a dropped source",
		spec: claim("1Gi", func(s *corev1.PersistentVolumeClaimSpec) {
			s.DataSourceRef = &corev1.TypedObjectReference{Kind: "Backup", Name: "b"}
		}),
		want: []Finding{{RuleTemplateAPIGroup, field.Invalid(at.Child("dataSourceRef", "apiGroup"), "",
			`a Backup source needs an apiGroup in a claim template: the apiserver rejects the workload without one; set spec.volumeClaimTemplates[0].spec.dataSourceRef.apiGroup to the group that serves Backup`)}},
	}, {
		name: "names one field when both name the same snapshot",
		spec: claim("5Gi", func(s *corev1.PersistentVolumeClaimSpec) {
			s.DataSource = &corev1.TypedLocalObjectReference{Kind: KindSnapshot, Name: "nightly"}
			s.DataSourceRef = &corev1.TypedObjectReference{Kind: KindSnapshot, Name: "nightly"}
		}),
		want: []Finding{{RuleTemplateAPIGroup, field.Invalid(at.Child("dataSource", "apiGroup"), "",
			`a VolumeSnapshot source needs an apiGroup in a claim template: the apiserver rejects the workload without one; set spec.volumeClaimTemplates[0].spec.dataSource.apiGroup to snapshot.storage.k8s.io`)}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.spec.DeepCopy()
			var asked *corev1.PersistentVolumeClaimSpec
			got, err := ValidateTemplate("ns", Template{Path: at, Name: "data", Spec: &c.spec}, DefaultGroups, nil, func(s *corev1.PersistentVolumeClaimSpec) (Facts, error) {
				asked = s
				return c.facts, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, &c.spec); diff != "" {
				t.Errorf("the template was changed (-before +after):\n%s", diff)
			}
			if asked != nil {
				if src, _ := SourceOf("ns", asked); src.Kind == KindSnapshot && src.APIGroup == "" {
					t.Errorf("facts were asked for a source without its defaulted group: %+v", src)
				}
			}
		})
	}
}

func TestValidateTemplatePassesOnLookupErrors(t *testing.T) {
	spec := claim("1Gi", cloneOf("src"))
	boom := errors.New("apiserver unreachable")
	_, err := ValidateTemplate("ns", Template{Path: specPath, Spec: &spec}, DefaultGroups, nil, func(*corev1.PersistentVolumeClaimSpec) (Facts, error) {
		return Facts{}, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("error = %v, want the lookup's", err)
	}
}

func TestStatefulSetTemplates(t *testing.T) {
	sts := &appsv1.StatefulSet{}
	sts.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{}, {}}
	sts.Spec.VolumeClaimTemplates[0].Name = "data"
	sts.Spec.VolumeClaimTemplates[1].Name = "logs"
	sts.Spec.Template.Spec.Volumes = []corev1.Volume{
		{Name: "config"},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{}}}},
		{Name: "empty-ephemeral", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}},
	}
	var got []string
	for _, tp := range StatefulSetTemplates(sts) {
		got = append(got, tp.Name+" "+tp.Path.String())
	}
	want := []string{
		"data spec.volumeClaimTemplates[0].spec",
		"logs spec.volumeClaimTemplates[1].spec",
		"scratch spec.template.spec.volumes[1].ephemeral.volumeClaimTemplate.spec",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("templates (-want +got):\n%s", diff)
	}
	// The specs are the workload's own, not copies.
	if StatefulSetTemplates(sts)[1].Spec != &sts.Spec.VolumeClaimTemplates[1].Spec {
		t.Error("template spec is a copy")
	}
}

func TestRebase(t *testing.T) {
	const p = "spec.volumes[2].ephemeral.volumeClaimTemplate.spec"
	cases := []struct{ in, want string }{
		{"spec", p},
		{"spec.volumeMode", p + ".volumeMode"},
		{"set spec.volumeMode to Block", "set " + p + ".volumeMode to Block"},
		{`("spec.storageClassName")`, `("` + p + `.storageClassName")`},
		{"drop spec.dataSourceRef.namespace and spec.x", "drop " + p + ".dataSourceRef.namespace and " + p + ".x"},
		{"a specific inspector.spec.x, no spec here", "a specific inspector.spec.x, no spec here"},
		{"", ""},
	}
	for _, c := range cases {
		if got := rebase(p, c.in); got != c.want {
			t.Errorf("rebase(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
