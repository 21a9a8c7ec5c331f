package webhook

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A cached snapshot keeps only what SourceLookup reads of it.
func TestSourceTrim(t *testing.T) {
	k := newSourceInformers(nil, nil).of(snapshotGVK)
	in := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
		"metadata": map[string]any{"name": "s", "namespace": "apps", "resourceVersion": "7", "uid": "u",
			"deletionTimestamp": "2026-01-01T00:00:00Z", "labels": map[string]any{"a": "b"}, "managedFields": []any{map[string]any{"manager": "m"}}},
		"spec":   map[string]any{"source": map[string]any{"persistentVolumeClaimName": "src"}},
		"status": map[string]any{"readyToUse": true, "restoreSize": "5Gi", "boundVolumeSnapshotContentName": "c", "creationTime": "2026-01-01T00:00:00Z"},
	}}
	out, err := k.trim(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
		"metadata": map[string]any{"name": "s", "namespace": "apps", "resourceVersion": "7", "deletionTimestamp": "2026-01-01T00:00:00Z"},
		"status":   map[string]any{"readyToUse": true, "restoreSize": "5Gi", "boundVolumeSnapshotContentName": "c"},
	}
	if diff := cmp.Diff(want, out.(*unstructured.Unstructured).Object); diff != "" {
		t.Errorf("trimmed (-want +got):\n%s", diff)
	}
}

// A cached content keeps its driver, the mode of the volume it was taken of and the annotation
// that allows a restore in the other mode: the volume-mode rule reads them.
func TestContentTrimKeepsTheVolumeMode(t *testing.T) {
	k := newSourceInformers(nil, nil).of(snapshotContentGVK)
	in := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
		"metadata": map[string]any{"name": "c", "resourceVersion": "3",
			"annotations": map[string]any{"snapshot.storage.kubernetes.io/allow-volume-mode-change": "true", "other": "x"}},
		"spec": map[string]any{"driver": "d", "sourceVolumeMode": "Filesystem", "deletionPolicy": "Delete"},
	}}
	out, err := k.trim(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
		"metadata": map[string]any{"name": "c", "resourceVersion": "3",
			"annotations": map[string]any{"snapshot.storage.kubernetes.io/allow-volume-mode-change": "true"}},
		"spec": map[string]any{"driver": "d", "sourceVolumeMode": "Filesystem"},
	}
	if diff := cmp.Diff(want, out.(*unstructured.Unstructured).Object); diff != "" {
		t.Errorf("trimmed (-want +got):\n%s", diff)
	}
}
