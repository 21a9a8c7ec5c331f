package rules

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// DefaultAPIGroups maps a data source kind to the API group the mutating
// webhook fills in when a source of that kind names none.
type DefaultAPIGroups map[string]string

// DefaultGroups is what clonegate defaults out of the box.
var DefaultGroups = DefaultAPIGroups{KindSnapshot: SnapshotAPIGroup}

// Mutation is what the mutating webhook decided for one claim.
type Mutation struct {
	Changed  bool      // the spec was defaulted and needs a patch
	Warnings []string  // what was defaulted, for the person applying
	Findings []Finding // denials and warnings to pass through a Policy
}

// MutateSource defaults the apiGroup of spec's data sources in place and
// checks what only the mutating stage can see: the apiserver silently drops a
// dataSource it does not keep (see droppedSource) and, with the
// CrossNamespaceVolumeDataSource gate off, any dataSourceRef with a
// namespace. Both must be judged here, before that happens.
func MutateSource(namespace string, spec *corev1.PersistentVolumeClaimSpec, groups DefaultAPIGroups) Mutation {
	var m Mutation
	ds, ref := spec.DataSource, spec.DataSourceRef
	if ds != nil && ref == nil {
		// Alone, a dataSource is kept only in its two historical shapes.
		if ds.Kind == KindSnapshot && groupOf(ds.APIGroup) == "" {
			m.defaultGroup(dataSourceAPIGroup, &ds.APIGroup, ds.Kind, DefaultGroups)
		} else if f, dropped := droppedSource(ds); dropped {
			m.Findings = append(m.Findings, f)
		}
		return m
	}
	if ds != nil && ref != nil && ds.Kind == ref.Kind && ds.Name == ref.Name {
		// Both name the same object: when one carries the group, the other
		// takes it, so that the two still match as the apiserver requires.
		if g := groupOf(ds.APIGroup, ref.APIGroup); g != "" {
			groups = DefaultAPIGroups{ds.Kind: g}
		}
	}
	if ds != nil {
		m.defaultGroup(dataSourceAPIGroup, &ds.APIGroup, ds.Kind, groups)
	}
	if ref != nil {
		m.defaultGroup(dataSourceRefAPIGroup, &ref.APIGroup, ref.Kind, groups)
		m.dropOwnNamespace(namespace, ref)
		m.Findings = append(m.Findings, checkSourceNamespace(namespace, spec.DataSourceRef)...)
	}
	return m
}

// SourcesCopy returns a copy of spec that MutateSource may change without
// changing spec. MutateSource sets only fields of the data sources, so those
// are copied and the rest (sizes, class, mode) is shared: read it, never
// change it.
func SourcesCopy(spec *corev1.PersistentVolumeClaimSpec) *corev1.PersistentVolumeClaimSpec {
	out := *spec
	if ds := spec.DataSource; ds != nil {
		c := *ds
		out.DataSource = &c
	}
	if ref := spec.DataSourceRef; ref != nil {
		c := *ref
		out.DataSourceRef = &c
	}
	return &out
}

// keptByAPIServer reports whether the apiserver keeps a dataSource given
// without a dataSourceRef. Its EnforceDataSourceBackwardsCompatibility
// (pkg/api/persistentvolumeclaim) keeps exactly a PersistentVolumeClaim in the
// core group and a VolumeSnapshot in snapshot.storage.k8s.io, and drops
// anything else without a word: the claim is stored with no source at all.
func keptByAPIServer(ds *corev1.TypedLocalObjectReference) bool {
	group := groupOf(ds.APIGroup)
	return (ds.Kind == KindClaim && group == coreAPIGroup) || (ds.Kind == KindSnapshot && group == SnapshotAPIGroup)
}

// droppedSource is the dropped-source finding for a dataSource (given
// without dataSourceRef) that the apiserver would drop, with the exact fix.
func droppedSource(ds *corev1.TypedLocalObjectReference) (Finding, bool) {
	if keptByAPIServer(ds) {
		return Finding{}, false
	}
	group, kind := groupOf(ds.APIGroup), ds.Kind
	path, value := dataSourcePath.Child("kind"), ds.Kind
	var fixes []string
	for _, known := range []string{KindClaim, KindSnapshot} {
		if kind != known && strings.EqualFold(kind, known) {
			fixes = append(fixes, "kind is case-sensitive: "+known)
			kind = known
		}
	}
	onGroup := func(fix string) {
		if len(fixes) == 0 {
			path, value = dataSourcePath.Child("apiGroup"), group
		}
		fixes = append(fixes, fix)
	}
	switch kind {
	case KindClaim:
		if group != coreAPIGroup {
			onGroup("a PersistentVolumeClaim is in the core group: remove apiGroup")
		}
	case KindSnapshot:
		switch {
		case group == "":
			onGroup("set apiGroup: " + SnapshotAPIGroup)
		case strings.HasPrefix(group, SnapshotAPIGroup+"/"):
			onGroup("apiGroup is a group, not group/version: " + SnapshotAPIGroup)
		case group != SnapshotAPIGroup:
			onGroup("a VolumeSnapshot's apiGroup is " + SnapshotAPIGroup)
		}
	default:
		fixes = append(fixes, fmt.Sprintf(
			"a populator belongs in dataSourceRef: move this source to spec.dataSourceRef, with the apiGroup that serves %s", kind))
	}
	return finding(RuleDroppedSource, path, value, fmt.Sprintf(
		"the apiserver keeps a dataSource only as a PersistentVolumeClaim (core group) or a VolumeSnapshot (%s) and would silently drop this one, "+
			"provisioning an empty volume instead of your data: %s", SnapshotAPIGroup, strings.Join(fixes, "; "))), true
}

// defaultGroup fills in the apiGroup (the field at path) of a source that
// names none, when its kind has a default. A kind without one is left for
// the apiserver, which rejects a non-claim dataSourceRef without apiGroup
// with its own message.
func (m *Mutation) defaultGroup(path string, group **string, kind string, groups DefaultAPIGroups) {
	if groupOf(*group) != "" || kind == KindClaim {
		return // a claim is in the core group and needs none
	}
	def, ok := groups[kind]
	if !ok {
		return
	}
	*group = &def
	m.Changed = true
	m.Warnings = append(m.Warnings, path+": defaulted to "+strconv.Quote(def)+" for kind "+kind+
		": without it the apiserver drops the data source and the volume would be provisioned empty")
}

// The apiGroup fields defaultGroup fills in.
var (
	dataSourceAPIGroup    = dataSourcePath.Child("apiGroup").String()
	dataSourceRefAPIGroup = dataSourceRefPath.Child("apiGroup").String()
)

// dropOwnNamespace removes a dataSourceRef.namespace that names the claim's
// own namespace. It means the same without it, and with the
// CrossNamespaceVolumeDataSource gate off (the default) the apiserver drops a
// dataSourceRef that has any namespace at all, so the volume would be empty.
func (m *Mutation) dropOwnNamespace(namespace string, ref *corev1.TypedObjectReference) {
	if ref.Namespace == nil || *ref.Namespace == "" || *ref.Namespace != namespace {
		return
	}
	ref.Namespace = nil
	m.Changed = true
	m.Warnings = append(m.Warnings, fmt.Sprintf(
		"%s: removed %q, the claim's own namespace: it means the same without it, and with the CrossNamespaceVolumeDataSource feature gate off the apiserver drops a dataSourceRef that names any namespace, and the volume would be provisioned empty",
		dataSourceRefPath.Child("namespace"), namespace))
}

func checkSourceNamespace(namespace string, ref *corev1.TypedObjectReference) []Finding {
	if ref.Namespace == nil || *ref.Namespace == "" || *ref.Namespace == namespace {
		return nil
	}
	return []Finding{finding(RuleCrossNamespace, dataSourceRefPath.Child("namespace"), *ref.Namespace, fmt.Sprintf(
		"the claim is in namespace %q but its source %s %q is in namespace %q; cross-namespace sources are not allowed: "+
			"create the claim in %q, or copy the source into %q (a snapshot or clone there) and drop spec.dataSourceRef.namespace",
		namespace, ref.Kind, ref.Name, *ref.Namespace, *ref.Namespace, namespace))}
}

// groupOf returns the first non-empty group.
func groupOf(groups ...*string) string {
	for _, g := range groups {
		if g != nil && *g != "" {
			return *g
		}
	}
	return ""
}
