// Package rules holds clonegate's clone rules as pure functions: objects in,
// findings out. No client reaches this package, so the admission webhooks and
// the offline `clonegate check` judge a claim with the very same code.
package rules

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Kinds and groups of the data sources the rules understand.
const (
	KindClaim         = "PersistentVolumeClaim"
	KindSnapshot      = "VolumeSnapshot"
	SnapshotAPIGroup  = "snapshot.storage.k8s.io"
	coreAPIGroup      = ""
	storageRequestKey = corev1.ResourceStorage
)

var (
	specPath          = field.NewPath("spec")
	dataSourcePath    = specPath.Child("dataSource")
	dataSourceRefPath = specPath.Child("dataSourceRef")
	storagePath       = specPath.Child("resources", "requests", string(corev1.ResourceStorage))
)

// Source is the object a claim asks to be pre-filled from.
type Source struct {
	// Path is the field the user most likely named the source in. The
	// apiserver mirrors one field into the other, so after that both are set:
	// claims and snapshots are usually written in spec.dataSource, populator
	// kinds in spec.dataSourceRef (the only field they are documented for).
	Path      *field.Path
	APIGroup  string
	Kind      string
	Name      string
	Namespace string // always set: the claim's own namespace unless dataSourceRef names another
}

// IsClone reports whether the source is another claim.
func (s Source) IsClone() bool { return s.Kind == KindClaim && s.APIGroup == coreAPIGroup }

// IsSnapshot reports whether the source is a VolumeSnapshot.
func (s Source) IsSnapshot() bool { return s.Kind == KindSnapshot && s.APIGroup == SnapshotAPIGroup }

// SourceOf returns the data source of a claim in namespace, or false when the
// claim has none.
func SourceOf(namespace string, spec *corev1.PersistentVolumeClaimSpec) (Source, bool) {
	switch {
	case spec.DataSource != nil && (spec.DataSourceRef == nil || spec.DataSource.Kind == KindClaim || spec.DataSource.Kind == KindSnapshot):
		src := Source{Path: dataSourcePath, Kind: spec.DataSource.Kind, Name: spec.DataSource.Name, Namespace: namespace}
		if spec.DataSource.APIGroup != nil {
			src.APIGroup = *spec.DataSource.APIGroup
		}
		return src, true
	case spec.DataSourceRef != nil:
		ref := spec.DataSourceRef
		src := Source{Path: dataSourceRefPath, Kind: ref.Kind, Name: ref.Name, Namespace: namespace}
		if ref.APIGroup != nil {
			src.APIGroup = *ref.APIGroup
		}
		if ref.Namespace != nil && *ref.Namespace != "" {
			src.Namespace = *ref.Namespace
		}
		return src, true
	}
	return Source{}, false
}
