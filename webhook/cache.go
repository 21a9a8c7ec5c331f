package webhook

import (
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions trims every cached object to the fields the rules read, so
// the cache's memory grows by little more than a name per claim.
func CacheOptions() cache.Options {
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.PersistentVolumeClaim{}: {Transform: trimClaim},
			&corev1.PersistentVolume{}:      {Transform: trimVolume},
			&storagev1.StorageClass{}:       {Transform: trimClass},
		},
	}
}

// CachedObjects are the kinds SourceLookup reads from the cache. Their
// informers are started before the server reports ready. Claims are not
// among them: a ClaimIndex holds those (the PVC transform above stays, so
// that a stray read of claims through the cache still caches little).
var CachedObjects = []client.Object{&corev1.PersistentVolume{}, &storagev1.StorageClass{}}

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
