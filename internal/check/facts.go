package check

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/clonegate/clonegate/webhook/rules"
)

// The annotations that mark the cluster's default StorageClass (GA and beta).
const (
	defaultClassAnnotation     = "storageclass.kubernetes.io/is-default-class"
	betaDefaultClassAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
)

// unknownDefaultClass names the class a claim that names none gets when no
// default StorageClass is among the manifests: the cluster's default, which
// offline nobody can tell. It keeps such a source from being reported as
// having no class at all.
const unknownDefaultClass = "(the cluster's default StorageClass)"

type key struct{ namespace, name string }

// index is what the manifests tell about sources, as the cluster would.
type index struct {
	claims       map[key]*corev1.PersistentVolumeClaim
	volumes      map[string]*corev1.PersistentVolume
	classes      map[string]*storagev1.StorageClass
	defaultClass *storagev1.StorageClass // the last one marked default, as the newest wins in a cluster
	snapshots    map[key]*unstructured.Unstructured
	contents     map[string]*unstructured.Unstructured
	populators   map[[2]string]bool // group, kind
}

func newIndex(objs []Object, namespace string) (*index, error) {
	x := &index{
		claims:     map[key]*corev1.PersistentVolumeClaim{},
		volumes:    map[string]*corev1.PersistentVolume{},
		classes:    map[string]*storagev1.StorageClass{},
		snapshots:  map[key]*unstructured.Unstructured{},
		contents:   map[string]*unstructured.Unstructured{},
		populators: map[[2]string]bool{},
	}
	var errs []error
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		k := key{namespaceOf(o, namespace), o.GetName()}
		switch gvk.Group + "/" + gvk.Kind {
		case "/PersistentVolumeClaim":
			c := &corev1.PersistentVolumeClaim{}
			if err := decode(o, c); err != nil {
				errs = append(errs, err)
				continue
			}
			x.claims[k] = c
		case "/PersistentVolume":
			v := &corev1.PersistentVolume{}
			if err := decode(o, v); err != nil {
				errs = append(errs, err)
				continue
			}
			x.volumes[o.GetName()] = v
		case "storage.k8s.io/StorageClass":
			c := &storagev1.StorageClass{}
			if err := decode(o, c); err != nil {
				errs = append(errs, err)
				continue
			}
			x.classes[c.Name] = c
			if c.Annotations[defaultClassAnnotation] == "true" || c.Annotations[betaDefaultClassAnnotation] == "true" {
				x.defaultClass = c
			}
		case rules.SnapshotAPIGroup + "/VolumeSnapshot":
			x.snapshots[k] = o.Unstructured
		case rules.SnapshotAPIGroup + "/VolumeSnapshotContent":
			x.contents[o.GetName()] = o.Unstructured
		case "populator.storage.k8s.io/VolumePopulator":
			group, _, _ := unstructured.NestedString(o.Object, "sourceKind", "group")
			kind, _, _ := unstructured.NestedString(o.Object, "sourceKind", "kind")
			x.populators[[2]string{group, kind}] = true
		}
	}
	// A source claim that names no class gets the default one when created.
	for _, c := range x.claims {
		if c.Spec.StorageClassName == nil {
			name := unknownDefaultClass
			if x.defaultClass != nil {
				name = x.defaultClass.Name
			}
			c.Spec.StorageClassName = &name
		}
	}
	return x, errors.Join(errs...)
}

// facts is what the manifests tell about the source of a claim in namespace.
// Like the webhook's lookup, it reads the class only once the source is found.
func (x *index) facts(namespace string, spec *corev1.PersistentVolumeClaimSpec) rules.Facts {
	// Complete false: a source not among the manifests may well be in the
	// cluster. SnapshotsServed true: when a snapshot is not among the
	// manifests nothing is said anyway, and when it is, the API is served.
	f := rules.Facts{SnapshotsServed: true}
	src, ok := rules.SourceOf(namespace, spec)
	if !ok {
		return f
	}
	switch {
	case src.IsClone():
		if f.SourceClaim = x.claims[key{src.Namespace, src.Name}]; f.SourceClaim == nil {
			return f
		}
		f.SourceVolume = x.volumes[f.SourceClaim.Spec.VolumeName]
	case src.IsSnapshot():
		if f.Snapshot = x.snapshot(src.Namespace, src.Name); f.Snapshot == nil {
			return f
		}
	default:
		if x.populators[[2]string{src.APIGroup, src.Kind}] {
			f.PopulatorKnown = ptr(true)
		} // otherwise unknown: the populator may be installed in the cluster
		return f
	}
	f.Class = x.class(spec.StorageClassName)
	return f
}

func (x *index) class(name *string) *storagev1.StorageClass {
	if name == nil {
		return x.defaultClass
	}
	return x.classes[*name]
}

// snapshot reads a VolumeSnapshot manifest and the driver of its content. A
// snapshot applied with the claim has no status yet: it is not readyToUse,
// as the webhook would find it, and its restoreSize is unknown.
func (x *index) snapshot(namespace, name string) *rules.Snapshot {
	u := x.snapshots[key{namespace, name}]
	if u == nil {
		return nil
	}
	snap := &rules.Snapshot{
		Deleting:        u.GetDeletionTimestamp() != nil,
		SourceProtected: slices.Contains(u.GetFinalizers(), rules.SnapshotSourceProtectionFinalizer),
	}
	snap.ReadyToUse, _, _ = unstructured.NestedBool(u.Object, "status", "readyToUse")
	if s, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "restoreSize"); ok {
		if q, err := resource.ParseQuantity(fmt.Sprint(s)); err == nil {
			snap.RestoreSize = &q
		}
	}
	content, _, _ := unstructured.NestedString(u.Object, "status", "boundVolumeSnapshotContentName")
	if content == "" {
		content, _, _ = unstructured.NestedString(u.Object, "spec", "source", "volumeSnapshotContentName")
	}
	if c := x.contents[content]; c != nil {
		snap.Driver, _, _ = unstructured.NestedString(c.Object, "spec", "driver")
		if mode, _, _ := unstructured.NestedString(c.Object, "spec", "sourceVolumeMode"); mode != "" {
			snap.SourceVolumeMode = ptr(corev1.PersistentVolumeMode(mode))
		}
		snap.AllowModeChange, _ = strconv.ParseBool(c.GetAnnotations()[rules.AllowVolumeModeChangeAnnotation])
	}
	return snap
}

func ptr[T any](v T) *T { return &v }
