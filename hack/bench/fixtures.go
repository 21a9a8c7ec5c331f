package main

import (
	"context"
	"encoding/json"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The bench's world: a bound, CSI-provisioned source claim that every clone
// copies, so a review does the whole lookup (claim, volume, class) and is
// allowed with no findings.
const (
	benchNS  = "bench"
	memoryNS = "bench-memory" // plain claims for the memory figures: no data sources
	srcName  = "src"
	pvName   = "pv-bench-src"
	class    = "bench-csi"
	driver   = "bench.csi.example.com"
	size     = "10Gi"
)

func createFixtures(ctx context.Context, c client.Client) error {
	for _, ns := range []string{benchNS, memoryNS} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	if err := c.Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Provisioner: driver}); err != nil {
		return err
	}
	fs := corev1.PersistentVolumeFilesystem
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:       class,
			VolumeMode:             &fs,
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: "vol-src"}},
			ClaimRef:               &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: benchNS, Name: srcName},
		},
	}
	if err := c.Create(ctx, pv); err != nil {
		return err
	}
	src := claim(srcName, nil)
	src.Spec.VolumeName = pvName
	if err := c.Create(ctx, src); err != nil {
		return err
	}
	src.Status = corev1.PersistentVolumeClaimStatus{
		Phase:       corev1.ClaimBound,
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
	}
	if err := c.Status().Update(ctx, src); err != nil {
		return err
	}
	return createSnapshot(ctx, c)
}

// The snapshot every restore restores: ready, of the source's size, taken
// by the class's driver.
const snapName = "snap"

var (
	snapshotGVK = schema.GroupVersionKind{Group: "snapshot.storage.k8s.io", Version: "v1", Kind: "VolumeSnapshot"}
	contentGVK  = schema.GroupVersionKind{Group: "snapshot.storage.k8s.io", Version: "v1", Kind: "VolumeSnapshotContent"}
)

func createSnapshot(ctx context.Context, c client.Client) error {
	content := &unstructured.Unstructured{}
	content.SetGroupVersionKind(contentGVK)
	content.SetName("bench-snap-content")
	content.Object["spec"] = map[string]any{"driver": driver, "deletionPolicy": "Delete",
		"source": map[string]any{"snapshotHandle": "h"}, "volumeSnapshotRef": map[string]any{"namespace": benchNS, "name": snapName}}
	if err := c.Create(ctx, content); err != nil {
		return err
	}
	snap := &unstructured.Unstructured{}
	snap.SetGroupVersionKind(snapshotGVK)
	snap.SetNamespace(benchNS)
	snap.SetName(snapName)
	snap.Object["spec"] = map[string]any{"source": map[string]any{"volumeSnapshotContentName": content.GetName()}}
	if err := c.Create(ctx, snap); err != nil {
		return err
	}
	snap.Object["status"] = map[string]any{"readyToUse": true, "restoreSize": size, "boundVolumeSnapshotContentName": content.GetName()}
	return c.Status().Update(ctx, snap)
}

// restore is a claim in the bench namespace restored from the snapshot.
func restore(name string) *corev1.PersistentVolumeClaim {
	c := claim(name, nil)
	group := snapshotGVK.Group
	c.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: snapshotGVK.Kind, Name: snapName}
	return c
}

// claim is a claim in the bench namespace, cloned from source when it is set.
func claim(name string, source *string) *corev1.PersistentVolumeClaim {
	sc := class
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNS},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
			StorageClassName: &sc,
		},
	}
	if source != nil {
		c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: *source}
	}
	return c
}

// cloneReview is the AdmissionReview the apiserver sends for `kubectl apply`
// of a clone of the source: defaulted spec, dataSourceRef mirrored, managed
// fields and all. Its uid is zeros, for the load generator to replace.
func cloneReview() ([]byte, error) {
	src := srcName
	c := claim("clone-direct", &src)
	fs := corev1.PersistentVolumeFilesystem
	c.Spec.VolumeMode = &fs
	c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: srcName}
	c.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"}
	c.UID = "6f0f5c1e-2b7a-4a51-9d49-2b0c8b0d3f10"
	c.CreationTimestamp = metav1.Now()
	c.Annotations = map[string]string{
		"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"annotations":{},"name":"clone-direct","namespace":"bench"},"spec":{"accessModes":["ReadWriteOnce"],"dataSource":{"kind":"PersistentVolumeClaim","name":"src"},"resources":{"requests":{"storage":"10Gi"}},"storageClassName":"bench-csi"}}` + "\n",
	}
	c.ManagedFields = []metav1.ManagedFieldsEntry{{
		Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		Time: &c.CreationTimestamp, FieldsType: "FieldsV1",
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}}},"f:spec":{"f:accessModes":{},"f:dataSource":{},"f:dataSourceRef":{},"f:resources":{"f:requests":{".":{},"f:storage":{}}},"f:storageClassName":{},"f:volumeMode":{}}}`)},
	}}
	c.Status.Phase = corev1.ClaimPending
	obj, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	gvk := metav1.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"}
	gvr := metav1.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	opts, _ := json.Marshal(metav1.CreateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"}, FieldManager: "kubectl-client-side-apply"})
	dry := false
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:  types.UID("00000000-0000-0000-0000-000000000000"),
			Kind: gvk, Resource: gvr, RequestKind: &gvk, RequestResource: &gvr,
			Name: c.Name, Namespace: benchNS, Operation: admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{Username: "kubernetes-admin", Groups: []string{"kubeadm:cluster-admins", "system:authenticated"}},
			Object:   runtime.RawExtension{Raw: obj},
			Options:  runtime.RawExtension{Raw: opts},
			DryRun:   &dry,
		},
	}
	return json.Marshal(review)
}
