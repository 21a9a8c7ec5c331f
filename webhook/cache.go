package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions trims every cached object to the fields the rules read, so
// the cache's memory grows by little more than a name per object. Only
// volumes and classes are cached (InformerStore); a ClaimIndex holds the
// claims, and the claim transform stays so that a stray read of claims
// through the cache still caches little.
func CacheOptions() cache.Options {
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.PersistentVolumeClaim{}: {Transform: trimClaim},
			&corev1.PersistentVolume{}:      {Transform: trimVolume},
			&storagev1.StorageClass{}:       {Transform: trimClass},
		},
	}
}

func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

func trimClaim(obj any) (any, error) {
	c, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone: leave it be
	}
	out := &corev1.PersistentVolumeClaim{
		ObjectMeta: trimMeta(c.ObjectMeta),
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: c.Spec.StorageClassName,
			VolumeMode:       c.Spec.VolumeMode,
			VolumeName:       c.Spec.VolumeName,
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: c.Status.Phase},
	}
	if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		out.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: q}
	}
	if q, ok := c.Status.Capacity[corev1.ResourceStorage]; ok {
		out.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: q}
	}
	return out, nil
}

func trimVolume(obj any) (any, error) {
	v, ok := obj.(*corev1.PersistentVolume)
	if !ok {
		return obj, nil
	}
	out := &corev1.PersistentVolume{ObjectMeta: trimMeta(v.ObjectMeta)}
	if v.Spec.CSI != nil {
		out.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: v.Spec.CSI.Driver, VolumeHandle: v.Spec.CSI.VolumeHandle}
	} else {
		// Any non-CSI source will do to say "not CSI"; keep it without its details.
		out.Spec.HostPath = &corev1.HostPathVolumeSource{}
	}
	return out, nil
}

func trimClass(obj any) (any, error) {
	c, ok := obj.(*storagev1.StorageClass)
	if !ok {
		return obj, nil
	}
	out := &storagev1.StorageClass{ObjectMeta: trimMeta(c.ObjectMeta), Provisioner: c.Provisioner}
	if v, ok := c.Annotations[defaultClassAnnotation]; ok {
		out.Annotations = map[string]string{defaultClassAnnotation: v}
	}
	return out, nil
}

// InformerStore returns the store of the informer for obj's kind, which
// starts with the cache: SourceLookup reads volumes and classes in place
// there, with none of the deep copy a cache read makes.
func InformerStore(ctx context.Context, c cache.Cache, obj client.Object) (toolscache.Store, error) {
	i, err := c.GetInformer(ctx, obj)
	if err != nil {
		return nil, fmt.Errorf("informer for %T: %w", obj, err)
	}
	s, ok := i.(interface{ GetStore() toolscache.Store })
	if !ok {
		return nil, fmt.Errorf("the informer for %T (%T) has no store to read", obj, i)
	}
	return s.GetStore(), nil
}
