package rules

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func ptr[T any](v T) *T { return &v }

func TestMutateSource(t *testing.T) {
	snap := func(group *string) *corev1.TypedLocalObjectReference {
		return &corev1.TypedLocalObjectReference{APIGroup: group, Kind: KindSnapshot, Name: "nightly"}
	}
	snapRef := func(group *string) *corev1.TypedObjectReference {
		return &corev1.TypedObjectReference{APIGroup: group, Kind: KindSnapshot, Name: "nightly"}
	}
	defaulted := func(path string) string {
		return path + `: defaulted to "snapshot.storage.k8s.io" for kind VolumeSnapshot: without it the apiserver drops the data source and the volume would be provisioned empty`
	}
	cases := []struct {
		name     string
		spec     corev1.PersistentVolumeClaimSpec
		groups   DefaultAPIGroups
		want     corev1.PersistentVolumeClaimSpec
		warnings []string
		findings []Finding
	}{{
		name: "leaves a claim without a source alone",
	}, {
		name: "defaults a snapshot in dataSource",
		spec: corev1.PersistentVolumeClaimSpec{DataSource: snap(nil)},
		want: corev1.PersistentVolumeClaimSpec{DataSource: snap(ptr(SnapshotAPIGroup))}, warnings: []string{defaulted("spec.dataSource.apiGroup")},
	}, {
		name: "defaults a snapshot whose apiGroup is an empty string",
		spec: corev1.PersistentVolumeClaimSpec{DataSource: snap(ptr(""))},
		want: corev1.PersistentVolumeClaimSpec{DataSource: snap(ptr(SnapshotAPIGroup))}, warnings: []string{defaulted("spec.dataSource.apiGroup")},
	}, {
		name: "defaults a snapshot in dataSourceRef",
		spec: corev1.PersistentVolumeClaimSpec{DataSourceRef: snapRef(nil)},
		want: corev1.PersistentVolumeClaimSpec{DataSourceRef: snapRef(ptr(SnapshotAPIGroup))}, warnings: []string{defaulted("spec.dataSourceRef.apiGroup")},
	}, {
		name:     "defaults both fields together so they still match",
		spec:     corev1.PersistentVolumeClaimSpec{DataSource: snap(nil), DataSourceRef: snapRef(nil)},
		want:     corev1.PersistentVolumeClaimSpec{DataSource: snap(ptr(SnapshotAPIGroup)), DataSourceRef: snapRef(ptr(SnapshotAPIGroup))},
		warnings: []string{defaulted("spec.dataSource.apiGroup"), defaulted("spec.dataSourceRef.apiGroup")},
	}, {
		name:     "copies the group one field has into the other",
		spec:     corev1.PersistentVolumeClaimSpec{DataSource: snap(nil), DataSourceRef: snapRef(ptr("snapshots.example.com"))},
		want:     corev1.PersistentVolumeClaimSpec{DataSource: snap(ptr("snapshots.example.com")), DataSourceRef: snapRef(ptr("snapshots.example.com"))},
		warnings: []string{`spec.dataSource.apiGroup: defaulted to "snapshots.example.com" for kind VolumeSnapshot: without it the apiserver drops the data source and the volume would be provisioned empty`},
	}, {
		name: "leaves a snapshot with its group alone",
		spec: corev1.PersistentVolumeClaimSpec{DataSource: snap(ptr(SnapshotAPIGroup))},
		want: corev1.PersistentVolumeClaimSpec{DataSource: snap(ptr(SnapshotAPIGroup))},
	}, {
		name: "leaves a clone alone: claims are in the core group",
		spec: corev1.PersistentVolumeClaimSpec{DataSource: &corev1.TypedLocalObjectReference{Kind: KindClaim, Name: "src"}},
		want: corev1.PersistentVolumeClaimSpec{DataSource: &corev1.TypedLocalObjectReference{Kind: KindClaim, Name: "src"}},
	}, {
		name:     "defaults a configured populator kind",
		spec:     corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: "Backup", Name: "b"}},
		groups:   DefaultAPIGroups{"Backup": "backup.example.com"},
		want:     corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{APIGroup: ptr("backup.example.com"), Kind: "Backup", Name: "b"}},
		warnings: []string{`spec.dataSourceRef.apiGroup: defaulted to "backup.example.com" for kind Backup: without it the apiserver drops the data source and the volume would be provisioned empty`},
	}, {
		name: "warns that an unknown kind without group will be dropped",
		spec: corev1.PersistentVolumeClaimSpec{DataSource: &corev1.TypedLocalObjectReference{Kind: "Backup", Name: "b"}},
		want: corev1.PersistentVolumeClaimSpec{DataSource: &corev1.TypedLocalObjectReference{Kind: "Backup", Name: "b"}},
		findings: []Finding{{RuleDroppedSource, field.Invalid(field.NewPath("spec", "dataSource", "kind"), "Backup",
			"kind Backup has no apiGroup, so the apiserver will drop this data source and provision an empty volume; set spec.dataSource.apiGroup to the group that serves Backup")}},
	}, {
		name: "leaves another kind with its group alone",
		spec: corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{APIGroup: ptr("example.com"), Kind: "Backup", Name: "b"}},
		want: corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{APIGroup: ptr("example.com"), Kind: "Backup", Name: "b"}},
	}, {
		name: "denies a source in another namespace, naming both",
		spec: corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "src", Namespace: ptr("team-a")}},
		want: corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "src", Namespace: ptr("team-a")}},
		findings: []Finding{{RuleCrossNamespace, field.Invalid(field.NewPath("spec", "dataSourceRef", "namespace"), "team-a",
			`the claim is in namespace "team-b" but its source PersistentVolumeClaim "src" is in namespace "team-a"; cross-namespace sources are not allowed: create the claim in "team-a", or copy the source into "team-b" (a snapshot or clone there) and drop spec.dataSourceRef.namespace`)}},
	}, {
		name:     "defaults and denies a snapshot in another namespace",
		spec:     corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindSnapshot, Name: "s", Namespace: ptr("team-a")}},
		want:     corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{APIGroup: ptr(SnapshotAPIGroup), Kind: KindSnapshot, Name: "s", Namespace: ptr("team-a")}},
		warnings: []string{defaulted("spec.dataSourceRef.apiGroup")},
		findings: []Finding{{RuleCrossNamespace, field.Invalid(field.NewPath("spec", "dataSourceRef", "namespace"), "team-a",
			`the claim is in namespace "team-b" but its source VolumeSnapshot "s" is in namespace "team-a"; cross-namespace sources are not allowed: create the claim in "team-a", or copy the source into "team-b" (a snapshot or clone there) and drop spec.dataSourceRef.namespace`)}},
	}, {
		name:     "removes a dataSourceRef namespace naming the claim's own, which the apiserver would drop with the source",
		spec:     corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "src", Namespace: ptr("team-b")}},
		want:     corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "src"}},
		warnings: []string{`spec.dataSourceRef.namespace: removed "team-b", the claim's own namespace: it means the same without it, and with the CrossNamespaceVolumeDataSource feature gate off the apiserver drops a dataSourceRef that names any namespace, and the volume would be provisioned empty`},
	}, {
		name: "allows an empty namespace",
		spec: corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "src", Namespace: ptr("")}},
		want: corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: KindClaim, Name: "src", Namespace: ptr("")}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			groups := DefaultGroups
			if c.groups != nil {
				groups = c.groups
			}
			spec := c.spec.DeepCopy()
			m := MutateSource("team-b", spec, groups)
			if diff := cmp.Diff(c.want, *spec); diff != "" {
				t.Errorf("spec after defaulting (-want +got):\n%s", diff)
			}
			if m.Changed != (len(c.warnings) > 0) {
				t.Errorf("Changed = %v, want %v", m.Changed, len(c.warnings) > 0)
			}
			if diff := cmp.Diff(c.warnings, m.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.findings, m.Findings); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}
