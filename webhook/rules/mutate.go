package rules

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
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
// checks what only the mutating stage can see. The apiserver silently drops a
// source without apiGroup (other than a claim) and, with the
// CrossNamespaceVolumeDataSource gate off, any dataSourceRef with a namespace:
// both must be judged here, before that happens.
func MutateSource(namespace string, spec *corev1.PersistentVolumeClaimSpec, groups DefaultAPIGroups) Mutation {
	var m Mutation
	ds, ref := spec.DataSource, spec.DataSourceRef
	if ds != nil && ref != nil && ds.Kind == ref.Kind && ds.Name == ref.Name {
		// Both name the same object: when one carries the group, the other
		// takes it, so that the two still match as the apiserver requires.
		if g := groupOf(ds.APIGroup, ref.APIGroup); g != "" {
			groups = DefaultAPIGroups{ds.Kind: g}
		}
	}
	if ds != nil {
		m.defaultGroup(dataSourcePath, &ds.APIGroup, ds.Kind, groups)
	}
	if ref != nil {
		m.defaultGroup(dataSourceRefPath, &ref.APIGroup, ref.Kind, groups)
		m.dropOwnNamespace(namespace, ref)
		m.Findings = append(m.Findings, checkSourceNamespace(namespace, spec.DataSourceRef)...)
	}
	return m
}

func (m *Mutation) defaultGroup(path *field.Path, group **string, kind string, groups DefaultAPIGroups) {
	if *group != nil && **group != "" {
		return
	}
	if kind == KindClaim {
		return // the core group: a claim needs no apiGroup
	}
	def, ok := groups[kind]
	if !ok {
		m.Findings = append(m.Findings, finding(RuleDroppedSource, path.Child("kind"), kind, fmt.Sprintf(
			"kind %s has no apiGroup, so the apiserver will drop this data source and provision an empty volume; set %s to the group that serves %s",
			kind, path.Child("apiGroup"), kind)))
		return
	}
	*group = &def
	m.Changed = true
	m.Warnings = append(m.Warnings, fmt.Sprintf(
		"%s: defaulted to %q for kind %s: without it the apiserver drops the data source and the volume would be provisioned empty",
		path.Child("apiGroup"), def, kind))
}

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
