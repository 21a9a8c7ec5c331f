package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/webhook/rules"
)

var (
	snapshotGVK        = schema.GroupVersionKind{Group: rules.SnapshotAPIGroup, Version: "v1", Kind: "VolumeSnapshot"}
	snapshotContentGVK = schema.GroupVersionKind{Group: rules.SnapshotAPIGroup, Version: "v1", Kind: "VolumeSnapshotContent"}
	populatorListGVK   = schema.GroupVersionKind{Group: "populator.storage.k8s.io", Version: "v1beta1", Kind: "VolumePopulatorList"}
)

// The annotations that mark a default StorageClass: the GA one and the beta
// one Kubernetes still honours (k8s pkg/volume/util/storageclass.go).
const (
	defaultClassAnnotation     = "storageclass.kubernetes.io/is-default-class"
	betaDefaultClassAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
)

// SourceLookup finds a claim's source in the claim index and the informer
// cache, and reads the apiserver directly when they miss, so that a source
// created a moment ago (in the same kubectl apply) is not reported missing.
//
// Only the source itself fails a review (on an error the apiserver may not
// repeat: try again). Every secondary object — the source's volume, a
// snapshot's content, a class, the populators — that is not served, forbidden
// to clonegate, gone or unreadable is recorded in Facts.Unread, and the rules
// that need it are skipped with a warning.
type SourceLookup struct {
	// Volumes and Classes are the informer stores of PersistentVolumes and
	// StorageClasses (InformerStore). Their objects are read where they
	// lie, with no copy: trimmed by CacheOptions, shared with the informer,
	// never modified. Nil reads them live.
	Volumes, Classes toolscache.Store
	Live             client.Reader // the apiserver itself: cache misses and snapshots
	// Claims answers claim lookups: a *ClaimIndex, which holds a cluster's
	// many claims in far less memory than an informer cache; nil reads them live.
	Claims interface {
		Claim(namespace, name string) (*corev1.PersistentVolumeClaim, bool)
	}
	// Mapper tells whether any API serves a populator's kind; may be nil.
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
			facts.SourceVolume = l.volume(ctx, name, &facts)
		}
	case src.IsSnapshot():
		if facts.Snapshot, facts.SnapshotsServed, err = l.snapshot(ctx, src.Namespace, src.Name, &facts); err != nil || facts.Snapshot == nil {
			return facts, err
		}
	default:
		facts.KindServed = l.kindServed(src)
		facts.PopulatorKnown = l.populatorKnown(ctx, src, &facts)
		return facts, nil
	}
	facts.Class = l.class(ctx, spec.StorageClassName, &facts)
	return facts, nil
}

// FreshFacts reads every fact from the apiserver, past the claim index and
// the informers: a denial judged on cached facts is confirmed with it, so
// that a cache a moment behind the apiserver (a watch gap, a content just
// annotated, a source just recreated) never denies a claim.
func (l *SourceLookup) FreshFacts(ctx context.Context, namespace string, spec *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
	live := &SourceLookup{Live: l.Live, Mapper: l.Mapper}
	return live.Facts(ctx, namespace, spec)
}

func (l *SourceLookup) claim(ctx context.Context, namespace, name string) (*corev1.PersistentVolumeClaim, error) {
	if l.Claims == nil {
		return getOrNil(ctx, l.Live, client.ObjectKey{Namespace: namespace, Name: name}, &corev1.PersistentVolumeClaim{})
	}
	if claim, ok := l.Claims.Claim(namespace, name); ok {
		return claim, nil
	}
	return getOrNil(ctx, l.Live, client.ObjectKey{Namespace: namespace, Name: name}, &corev1.PersistentVolumeClaim{})
}

// volume reads the source's PersistentVolume, from the cache and live on a miss.
func (l *SourceLookup) volume(ctx context.Context, name string, facts *rules.Facts) *corev1.PersistentVolume {
	pv := stored[*corev1.PersistentVolume](l.Volumes, name)
	var err error
	if pv == nil {
		pv, err = getOrNil(ctx, l.Live, client.ObjectKey{Name: name}, &corev1.PersistentVolume{})
	}
	switch {
	case err != nil:
		unread(facts, rules.FactSourceVolume, fmt.Sprintf("PersistentVolume %q", name), err)
	case pv == nil:
		unread(facts, rules.FactSourceVolume, fmt.Sprintf("PersistentVolume %q", name), errors.New("it does not exist"))
	}
	return pv
}

// class returns the named StorageClass, or the cluster default when the claim
// names none. An explicit "" means no class at all. What the cache lacks is
// read live: a class created a moment ago (in the same apply, or during a
// watch gap) must not be reported missing.
func (l *SourceLookup) class(ctx context.Context, name *string, facts *rules.Facts) *storagev1.StorageClass {
	if name != nil && *name == "" {
		return nil
	}
	var class *storagev1.StorageClass
	switch {
	case name != nil:
		class = stored[*storagev1.StorageClass](l.Classes, *name)
	case l.Classes != nil:
		class = defaultClass(storedAll[*storagev1.StorageClass](l.Classes))
	}
	var err error
	if class == nil {
		class, err = l.liveClass(ctx, name)
	}
	if err != nil {
		what := "the default StorageClass"
		if name != nil {
			what = fmt.Sprintf("StorageClass %q", *name)
		}
		unread(facts, rules.FactClass, what, err)
	}
	return class
}

// liveClass reads the named StorageClass, or the default one, from the apiserver.
func (l *SourceLookup) liveClass(ctx context.Context, name *string) (*storagev1.StorageClass, error) {
	if name != nil {
		return getOrNil(ctx, l.Live, client.ObjectKey{Name: *name}, &storagev1.StorageClass{})
	}
	var list storagev1.StorageClassList
	if err := l.Live.List(ctx, &list); err != nil {
		return nil, err
	}
	classes := make([]*storagev1.StorageClass, len(list.Items))
	for i := range list.Items {
		classes[i] = &list.Items[i]
	}
	return defaultClass(classes), nil
}

// stored returns the object store holds under key, in place (read-only), or
// the zero T when store is nil or holds none.
func stored[T any](store toolscache.Store, key string) T {
	var zero T
	if store == nil {
		return zero
	}
	obj, ok, err := store.GetByKey(key)
	if err != nil || !ok {
		return zero
	}
	t, _ := obj.(T)
	return t
}

// storedAll returns every object of store, in place (read-only).
func storedAll[T any](store toolscache.Store) []T {
	objs := store.List()
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// defaultClass picks the cluster's default StorageClass as Kubernetes does:
// among those annotated default (GA or beta annotation), the newest, and
// between equally new ones the first by name.
func defaultClass(classes []*storagev1.StorageClass) *storagev1.StorageClass {
	var def *storagev1.StorageClass
	for _, c := range classes {
		if c.Annotations[defaultClassAnnotation] != "true" && c.Annotations[betaDefaultClassAnnotation] != "true" {
			continue
		}
		switch {
		case def == nil, c.CreationTimestamp.After(def.CreationTimestamp.Time):
			def = c
		case c.CreationTimestamp.Equal(&def.CreationTimestamp) && c.Name < def.Name:
			def = c
		}
	}
	return def
}

// snapshot reads a VolumeSnapshot and what the rules need of its content.
// served is false when the cluster has no snapshot API. Only the snapshot
// itself can fail the review; its content is a secondary fact.
func (l *SourceLookup) snapshot(ctx context.Context, namespace, name string, facts *rules.Facts) (snap *rules.Snapshot, served bool, err error) {
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
	snap = &rules.Snapshot{
		Deleting:        u.GetDeletionTimestamp() != nil,
		SourceProtected: slices.Contains(u.GetFinalizers(), rules.SnapshotSourceProtectionFinalizer),
	}
	snap.ReadyToUse, _, _ = unstructured.NestedBool(u.Object, "status", "readyToUse")
	if s, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "restoreSize"); ok {
		q, perr := quantityOf(s)
		if perr != nil {
			return nil, true, fmt.Errorf("VolumeSnapshot %s/%s has status.restoreSize %v: %w", namespace, name, s, perr)
		}
		snap.RestoreSize = q
	}
	if content, _, _ := unstructured.NestedString(u.Object, "status", "boundVolumeSnapshotContentName"); content != "" {
		l.content(ctx, content, snap, facts)
	}
	return snap, true, nil
}

// content fills in what a snapshot's VolumeSnapshotContent says: its driver,
// the mode of the volume it was taken from, and whether a restore may change it.
func (l *SourceLookup) content(ctx context.Context, name string, snap *rules.Snapshot, facts *rules.Facts) {
	c := &unstructured.Unstructured{}
	c.SetGroupVersionKind(snapshotContentGVK)
	what := fmt.Sprintf("VolumeSnapshotContent %q", name)
	if err := l.readSource(ctx, client.ObjectKey{Name: name}, c, contentComplete); err != nil {
		unread(facts, rules.FactContent, what, err)
		return
	}
	snap.Driver, _, _ = unstructured.NestedString(c.Object, "spec", "driver")
	if mode, ok, _ := unstructured.NestedString(c.Object, "spec", "sourceVolumeMode"); ok && mode != "" {
		m := corev1.PersistentVolumeMode(mode)
		snap.SourceVolumeMode = &m
	}
	// Parsed as the external-provisioner parses it (strconv.ParseBool).
	snap.AllowModeChange, _ = strconv.ParseBool(c.GetAnnotations()[rules.AllowVolumeModeChangeAnnotation])
}

// kindServed reports whether any API in the cluster serves src's kind; nil
// when that cannot be told.
func (l *SourceLookup) kindServed(src rules.Source) *bool {
	if l.Mapper == nil {
		return nil
	}
	_, err := l.Mapper.RESTMapping(schema.GroupKind{Group: src.APIGroup, Kind: src.Kind})
	switch {
	case err == nil:
		return ptrTo(true)
	case meta.IsNoMatchError(err):
		return ptrTo(false)
	}
	return nil
}

// populatorKnown reports whether a VolumePopulator registers src's kind; nil
// when the cluster has no VolumePopulator API to ask, or it cannot be read.
func (l *SourceLookup) populatorKnown(ctx context.Context, src rules.Source, facts *rules.Facts) *bool {
	if cached, ok := l.Sources.List(populatorListGVK); ok && registers(cached, src) {
		return ptrTo(true)
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(populatorListGVK)
	if err := l.Live.List(ctx, list); meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		unread(facts, rules.FactPopulators, "VolumePopulators", err)
		return nil
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
	return &known
}

// unread records a secondary fact that could not be read, saying why in
// words a cluster admin can act on.
func unread(facts *rules.Facts, fact rules.Fact, what string, err error) {
	why := err.Error()
	switch {
	case meta.IsNoMatchError(err):
		why = "its API is not served in this cluster"
	case apierrors.IsForbidden(err):
		why = "clonegate is forbidden to read it; grant its ServiceAccount get on it"
	case apierrors.IsNotFound(err):
		why = "it does not exist"
	}
	facts.Unread = append(facts.Unread, rules.Unread{Fact: fact, Why: what + ": " + why})
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
