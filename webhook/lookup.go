package webhook

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/webhook/rules"
)

var (
	snapshotGVK        = schema.GroupVersionKind{Group: rules.SnapshotAPIGroup, Version: "v1", Kind: "VolumeSnapshot"}
	snapshotContentGVK = schema.GroupVersionKind{Group: rules.SnapshotAPIGroup, Version: "v1", Kind: "VolumeSnapshotContent"}
	populatorListGVK   = schema.GroupVersionKind{Group: "populator.storage.k8s.io", Version: "v1beta1", Kind: "VolumePopulatorList"}
)

// defaultClassAnnotation marks the cluster's default StorageClass.
const defaultClassAnnotation = "storageclass.kubernetes.io/is-default-class"

// SourceLookup finds a claim's source in the claim index and the informer
// cache, and reads the apiserver directly when they miss, so that a source
// created a moment ago (in the same kubectl apply) is not reported missing.
type SourceLookup struct {
	Cache client.Reader // informer-backed: volumes, storage classes
	Live  client.Reader // the apiserver itself: cache misses and snapshots
	// Claims answers claim lookups: a *ClaimIndex, which holds a cluster's
	// many claims in far less memory than an informer cache.
	Claims interface {
		Claim(namespace, name string) (*corev1.PersistentVolumeClaim, bool)
	}
	// Mapper says which kinds the cluster serves; nil: unknown, and the
	// unknown-populator rule needs a VolumePopulator API instead.
	Mapper meta.RESTMapper
	// Sources holds snapshots, their contents and populators once their
	// APIs are served; nil reads them all live.
	Sources *SourceInformers
}

// Facts gathers the objects the rules read for a claim in namespace.
func (l *SourceLookup) Facts(ctx context.Context, namespace string, spec *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
	facts := rules.Facts{Complete: true}
	src, ok := rules.SourceOf(namespace, spec)
	if !ok {
		return facts, nil
	}
	var err error
	switch {
	case src.IsClone():
		if facts.SourceClaim, err = l.claim(ctx, src.Namespace, src.Name); err != nil || facts.SourceClaim == nil {
			return facts, err
		}
		if name := facts.SourceClaim.Spec.VolumeName; name != "" {
			if facts.SourceVolume, err = getOrNil(ctx, l.Cache, client.ObjectKey{Name: name}, &corev1.PersistentVolume{}); err != nil {
				return facts, err
			}
		}
	case src.IsSnapshot():
		if facts.Snapshot, facts.SnapshotsServed, err = l.snapshot(ctx, src.Namespace, src.Name); err != nil || facts.Snapshot == nil {
			return facts, err
		}
	default:
		if facts.PopulatorKnown, err = l.populatorKnown(ctx, src); err != nil {
			return facts, err
		}
		return facts, nil
	}
	facts.Class, err = l.class(ctx, spec.StorageClassName)
	return facts, err
}

func (l *SourceLookup) claim(ctx context.Context, namespace, name string) (*corev1.PersistentVolumeClaim, error) {
	if claim, ok := l.Claims.Claim(namespace, name); ok {
		return claim, nil
	}
	return getOrNil(ctx, l.Live, client.ObjectKey{Namespace: namespace, Name: name}, &corev1.PersistentVolumeClaim{})
}

// class returns the named StorageClass, or the cluster default when the claim
// names none. An explicit "" means no class at all. A class the cache lacks
// is read live: one created a moment ago (in the same apply, or during a
// watch gap) must not be reported missing.
func (l *SourceLookup) class(ctx context.Context, name *string) (*storagev1.StorageClass, error) {
	if name != nil {
		if *name == "" {
			return nil, nil
		}
		key := client.ObjectKey{Name: *name}
		if c, err := getOrNil(ctx, l.Cache, key, &storagev1.StorageClass{}); err != nil || c != nil {
			return c, err
		}
		return getOrNil(ctx, l.Live, key, &storagev1.StorageClass{})
	}
	if def, err := defaultClass(ctx, l.Cache); err != nil || def != nil {
		return def, err
	}
	return defaultClass(ctx, l.Live)
}

// defaultClass returns the cluster's default StorageClass as r sees it.
func defaultClass(ctx context.Context, r client.Reader) (*storagev1.StorageClass, error) {
	var classes storagev1.StorageClassList
	if err := r.List(ctx, &classes); err != nil {
		return nil, err
	}
	// As the DefaultStorageClass admission plugin does: the newest default wins.
	var def *storagev1.StorageClass
	for i := range classes.Items {
		c := &classes.Items[i]
		if c.Annotations[defaultClassAnnotation] != "true" {
			continue
		}
		if def == nil || c.CreationTimestamp.After(def.CreationTimestamp.Time) {
			def = c
		}
	}
	return def, nil
}

// snapshot reads a VolumeSnapshot and the driver of its content. served is
// false when the cluster has no snapshot API.
func (l *SourceLookup) snapshot(ctx context.Context, namespace, name string) (snap *rules.Snapshot, served bool, err error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(snapshotGVK)
	err = l.readSource(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u, snapshotComplete)
	switch {
	case meta.IsNoMatchError(err):
		return nil, false, nil
	case apierrors.IsNotFound(err):
		return nil, true, nil
	case err != nil:
		return nil, true, err
	}
	snap = &rules.Snapshot{Deleting: u.GetDeletionTimestamp() != nil}
	snap.ReadyToUse, _, _ = unstructured.NestedBool(u.Object, "status", "readyToUse")
	if s, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "restoreSize"); ok {
		q, perr := quantityOf(s)
		if perr != nil {
			return nil, true, fmt.Errorf("VolumeSnapshot %s/%s has status.restoreSize %v: %w", namespace, name, s, perr)
		}
		snap.RestoreSize = q
	}
	if content, _, _ := unstructured.NestedString(u.Object, "status", "boundVolumeSnapshotContentName"); content != "" {
		c := &unstructured.Unstructured{}
		c.SetGroupVersionKind(snapshotContentGVK)
		if err := l.readSource(ctx, client.ObjectKey{Name: content}, c, contentComplete); err != nil && !apierrors.IsNotFound(err) {
			return nil, true, err
		}
		contentFacts(snap, c)
	}
	return snap, true, nil
}

// contentFacts reads what a restore depends on from a snapshot's VolumeSnapshotContent.
func contentFacts(snap *rules.Snapshot, c *unstructured.Unstructured) {
	snap.Driver, _, _ = unstructured.NestedString(c.Object, "spec", "driver")
	if m, _, _ := unstructured.NestedString(c.Object, "spec", "sourceVolumeMode"); m != "" {
		mode := corev1.PersistentVolumeMode(m)
		snap.SourceVolumeMode = &mode
	}
	// As external-provisioner parses it: anything but a true boolean keeps the mode.
	snap.AllowVolumeModeChange, _ = strconv.ParseBool(c.GetAnnotations()[rules.AnnAllowVolumeModeChange])
}

// populatorKnown reports whether a VolumePopulator registers src's kind. Without
// a VolumePopulator API it is false for a kind no API serves, nil (unknown) otherwise.
func (l *SourceLookup) populatorKnown(ctx context.Context, src rules.Source) (*bool, error) {
	if cached, ok := l.Sources.List(populatorListGVK); ok && registers(cached, src) {
		known := true
		return &known, nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(populatorListGVK)
	if err := l.Live.List(ctx, list); meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		// No VolumePopulator API to ask; a kind that no API serves is still never filled.
		if l.Mapper == nil {
			return nil, nil
		}
		if _, err := l.Mapper.RESTMapping(schema.GroupKind{Group: src.APIGroup, Kind: src.Kind}); meta.IsNoMatchError(err) {
			known := false
			return &known, nil
		}
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	l.Sources.Served(populatorListGVK)
	known := false
	for _, p := range list.Items {
		group, _, _ := unstructured.NestedString(p.Object, "sourceKind", "group")
		kind, _, _ := unstructured.NestedString(p.Object, "sourceKind", "kind")
		if group == src.APIGroup && kind == src.Kind {
			known = true
		}
	}
	return &known, nil
}

// readSource reads a snapshot or content into u (its GVK set): from the
// informer when it holds one that complete accepts, otherwise live — a miss,
// or an object the cache may hold in an older state (a snapshot not ready
// yet), since a stale answer there would be a false warning or denial. What
// it returns from the cache is shared with it: read it, never modify it.
func (l *SourceLookup) readSource(ctx context.Context, key client.ObjectKey, u *unstructured.Unstructured, complete func(*unstructured.Unstructured) bool) error {
	gvk := u.GroupVersionKind()
	if cached, ok := l.Sources.Get(gvk, key); ok && complete(cached) {
		u.Object = cached.Object
		return nil
	}
	err := l.Live.Get(ctx, key, u)
	if err == nil || apierrors.IsNotFound(err) {
		l.Sources.Served(gvk)
	}
	return err
}

// snapshotComplete accepts a cached snapshot that no rule could find fault
// with for its state: ready, sized, bound to a content, not being deleted.
func snapshotComplete(u *unstructured.Unstructured) bool {
	ready, _, _ := unstructured.NestedBool(u.Object, "status", "readyToUse")
	_, sized, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "restoreSize")
	content, _, _ := unstructured.NestedString(u.Object, "status", "boundVolumeSnapshotContentName")
	return ready && sized && content != "" && u.GetDeletionTimestamp() == nil
}

// contentComplete accepts a cached content that names its driver.
func contentComplete(u *unstructured.Unstructured) bool {
	driver, _, _ := unstructured.NestedString(u.Object, "spec", "driver")
	return driver != ""
}

// registers reports whether one of populators registers src's kind.
func registers(populators []*unstructured.Unstructured, src rules.Source) bool {
	for _, p := range populators {
		group, _, _ := unstructured.NestedString(p.Object, "sourceKind", "group")
		kind, _, _ := unstructured.NestedString(p.Object, "sourceKind", "kind")
		if group == src.APIGroup && kind == src.Kind {
			return true
		}
	}
	return false
}

func quantityOf(v any) (*resource.Quantity, error) {
	switch v := v.(type) {
	case string:
		q, err := resource.ParseQuantity(v)
		return &q, err
	case int64:
		return resource.NewQuantity(v, resource.BinarySI), nil
	case float64:
		return resource.NewQuantity(int64(v), resource.BinarySI), nil
	}
	return nil, fmt.Errorf("not a quantity")
}

// getOrNil gets an object, returning nil (not an error) when it does not exist.
func getOrNil[T client.Object](ctx context.Context, r client.Reader, key client.ObjectKey, obj T) (T, error) {
	var zero T
	if err := r.Get(ctx, key, obj); apierrors.IsNotFound(err) {
		return zero, nil
	} else if err != nil {
		return zero, err
	}
	return obj, nil
}
