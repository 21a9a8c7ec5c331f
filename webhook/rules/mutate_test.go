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
		name: "leaves a dataSourceRef kind without group or default to the apiserver, which rejects it",
		spec: corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: "Backup", Name: "b"}},
		want: corev1.PersistentVolumeClaimSpec{DataSourceRef: &corev1.TypedObjectReference{Kind: "Backup", Name: "b"}},
	}, {
		name: "leaves a populator named in both fields alone: with dataSourceRef set nothing is dropped",
		spec: corev1.PersistentVolumeClaimSpec{
			DataSource:    &corev1.TypedLocalObjectReference{APIGroup: ptr("backup.example.com"), Kind: "Backup", Name: "b"},
			DataSourceRef: &corev1.TypedObjectReference{APIGroup: ptr("backup.example.com"), Kind: "Backup", Name: "b"}},
		want: corev1.PersistentVolumeClaimSpec{
			DataSource:    &corev1.TypedLocalObjectReference{APIGroup: ptr("backup.example.com"), Kind: "Backup", Name: "b"},
			DataSourceRef: &corev1.TypedObjectReference{APIGroup: ptr("backup.example.com"), Kind: "Backup", Name: "b"}},
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

// Every dataSource (without dataSourceRef) that EnforceDataSourceBackwardsCompatibility
// would drop is a dropped-source finding with the exact fix; the two shapes it keeps are not.
func TestMutateSourceDroppedShapes(t *testing.T) {
	const drops = "the apiserver keeps a dataSource only as a PersistentVolumeClaim (core group) or a VolumeSnapshot (snapshot.storage.k8s.io) and would silently drop this one, provisioning an empty volume instead of your data: "
	kindPath, groupPath := field.NewPath("spec", "dataSource", "kind"), field.NewPath("spec", "dataSource", "apiGroup")
	cases := []struct {
		name  string
		group *string
		kind  string
		want  []Finding // nil: kept
	}{
		{name: "keeps a clone without apiGroup", kind: KindClaim},
		{name: "keeps a clone with an empty apiGroup", group: ptr(""), kind: KindClaim},
		{name: "keeps a restore with its group", group: ptr(SnapshotAPIGroup), kind: KindSnapshot},
		{name: "denies a clone with apiGroup v1", group: ptr("v1"), kind: KindClaim,
			want: []Finding{{RuleDroppedSource, field.Invalid(groupPath, "v1", drops+"a PersistentVolumeClaim is in the core group: remove apiGroup")}}},
		{name: "denies a clone with apiGroup core", group: ptr("core"), kind: KindClaim,
			want: []Finding{{RuleDroppedSource, field.Invalid(groupPath, "core", drops+"a PersistentVolumeClaim is in the core group: remove apiGroup")}}},
		{name: "denies a restore with a versioned group", group: ptr("snapshot.storage.k8s.io/v1"), kind: KindSnapshot,
			want: []Finding{{RuleDroppedSource, field.Invalid(groupPath, "snapshot.storage.k8s.io/v1", drops+"apiGroup is a group, not group/version: snapshot.storage.k8s.io")}}},
		{name: "denies a restore in another group", group: ptr("storage.k8s.io"), kind: KindSnapshot,
			want: []Finding{{RuleDroppedSource, field.Invalid(groupPath, "storage.k8s.io", drops+"a VolumeSnapshot's apiGroup is snapshot.storage.k8s.io")}}},
		{name: "denies a snapshot kind in the wrong case", group: ptr(SnapshotAPIGroup), kind: "volumesnapshot",
			want: []Finding{{RuleDroppedSource, field.Invalid(kindPath, "volumesnapshot", drops+"kind is case-sensitive: VolumeSnapshot")}}},
		{name: "denies a snapshot kind in the wrong case without group, naming both fixes", kind: "Volumesnapshot",
			want: []Finding{{RuleDroppedSource, field.Invalid(kindPath, "Volumesnapshot", drops+"kind is case-sensitive: VolumeSnapshot; set apiGroup: snapshot.storage.k8s.io")}}},
		{name: "denies a claim kind in the wrong case", kind: "persistentvolumeclaim",
			want: []Finding{{RuleDroppedSource, field.Invalid(kindPath, "persistentvolumeclaim", drops+"kind is case-sensitive: PersistentVolumeClaim")}}},
		{name: "denies a claim kind in the wrong case with a group", group: ptr("v1"), kind: "PersistentVolumeclaim",
			want: []Finding{{RuleDroppedSource, field.Invalid(kindPath, "PersistentVolumeclaim", drops+"kind is case-sensitive: PersistentVolumeClaim; a PersistentVolumeClaim is in the core group: remove apiGroup")}}},
		{name: "denies a populator kind in dataSource", group: ptr("backup.example.com"), kind: "Backup",
			want: []Finding{{RuleDroppedSource, field.Invalid(kindPath, "Backup", drops+"a populator belongs in dataSourceRef: move this source to spec.dataSourceRef, with the apiGroup that serves Backup")}}},
		{name: "denies a populator kind without group in dataSource", kind: "Backup",
			want: []Finding{{RuleDroppedSource, field.Invalid(kindPath, "Backup", drops+"a populator belongs in dataSourceRef: move this source to spec.dataSourceRef, with the apiGroup that serves Backup")}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := &corev1.TypedLocalObjectReference{APIGroup: c.group, Kind: c.kind, Name: "src"}
			spec := corev1.PersistentVolumeClaimSpec{DataSource: ds.DeepCopy()}
			// A configured default for the populator kind must not apply in
			// dataSource: it would be dropped all the same.
			m := MutateSource("team-b", &spec, DefaultAPIGroups{KindSnapshot: SnapshotAPIGroup, "Backup": "backup.example.com"})
			if diff := cmp.Diff(c.want, m.Findings); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			if m.Changed || !cmp.Equal(ds, spec.DataSource) {
				t.Errorf("the spec was changed: %+v", spec.DataSource)
			}
		})
	}
}

// MutateSource on a SourcesCopy leaves the original as it was, and changes
// the copy as it would have changed the original.
func TestSourcesCopy(t *testing.T) {
	class, mode := "csi", corev1.PersistentVolumeBlock
	for _, spec := range []corev1.PersistentVolumeClaimSpec{
		{DataSource: &corev1.TypedLocalObjectReference{Kind: KindSnapshot, Name: "nightly"}},
		{DataSourceRef: &corev1.TypedObjectReference{Kind: KindSnapshot, Name: "nightly", Namespace: ptr("apps")}},
		{StorageClassName: &class, VolumeMode: &mode,
			DataSource:    &corev1.TypedLocalObjectReference{Kind: KindSnapshot, Name: "nightly"},
			DataSourceRef: &corev1.TypedObjectReference{APIGroup: ptr(SnapshotAPIGroup), Kind: KindSnapshot, Name: "nightly", Namespace: ptr("apps")}},
		{DataSourceRef: &corev1.TypedObjectReference{Kind: "Backup", Name: "b", Namespace: ptr("team-a")}},
	} {
		original := spec.DeepCopy()
		copied := SourcesCopy(&spec)
		deep := spec.DeepCopy()
		MutateSource("apps", copied, DefaultAPIGroups{KindSnapshot: SnapshotAPIGroup, "Backup": "backup.example.com"})
		MutateSource("apps", deep, DefaultAPIGroups{KindSnapshot: SnapshotAPIGroup, "Backup": "backup.example.com"})
		if diff := cmp.Diff(original, &spec); diff != "" {
			t.Errorf("the original changed (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(deep, copied); diff != "" {
			t.Errorf("the copy was mutated otherwise than a deep copy (-deep +copy):\n%s", diff)
		}
	}
}
