package e2e

import corev1 "k8s.io/api/core/v1"

func groupOf(ref *corev1.TypedLocalObjectReference) *string {
	if ref == nil {
		return nil
	}
	return ref.APIGroup
}

func groupOfRef(ref *corev1.TypedObjectReference) *string {
	if ref == nil {
		return nil
	}
	return ref.APIGroup
}
