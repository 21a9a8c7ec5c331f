package webhook

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// claimListCodec encodes and decodes claim lists in protobuf, as the
// apiserver and client-go do.
func claimListCodec(t testing.TB) *protobuf.Serializer {
	s, err := protobufCodec()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var protobufCodec = sync.OnceValues(func() (*protobuf.Serializer, error) {
	s := runtime.NewScheme()
	return protobuf.NewSerializer(s, s), corev1.AddToScheme(s)
})

func encodeClaimList(t testing.TB, l *corev1.PersistentVolumeClaimList) []byte {
	l = l.DeepCopy()
	l.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaimList"))
	var b bytes.Buffer
	if err := claimListCodec(t).Encode(l, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// decodedClaims are the claims of a list as the index reads them, decoded
// whole by the generated decoders.
func decodedClaims(t testing.TB, body []byte) (claimPage, error) {
	var l corev1.PersistentVolumeClaimList
	if _, _, err := claimListCodec(t).Decode(body, nil, &l); err != nil {
		return claimPage{}, err
	}
	return pageOf(&l), nil
}

func sampleClaims() *corev1.PersistentVolumeClaimList {
	class, empty, block := "fast", "", corev1.PersistentVolumeBlock
	odd := corev1.PersistentVolumeMode("Odd")
	deleted := metav1.NewTime(time.Unix(1700000000, 123456789))
	zero := metav1.Time{}
	full := corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "full", Namespace: "apps", UID: "u-1", ResourceVersion: "42", Generation: 3,
			Labels: map[string]string{"app": "db"}, Annotations: map[string]string{"a": "b"}, Finalizers: []string{"kubernetes.io/pvc-protection"},
			DeletionTimestamp: &deleted, CreationTimestamp: metav1.NewTime(time.Unix(1600000000, 0)),
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)}}}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}},
			Resources: corev1.VolumeResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("20Gi")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceStorage: resource.MustParse("10Gi"), "zz": resource.MustParse("3")},
			},
			VolumeName: "pv-1", StorageClassName: &class, VolumeMode: &block,
			DataSource: &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "src"},
		},
		Status: corev1.PersistentVolumeClaimStatus{
			Phase: corev1.ClaimBound, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Capacity:           corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10737418240")},
			Conditions:         []corev1.PersistentVolumeClaimCondition{{Type: corev1.PersistentVolumeClaimResizing, Status: corev1.ConditionTrue}},
			AllocatedResources: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Ti")},
		},
	}
	l := &corev1.PersistentVolumeClaimList{ListMeta: metav1.ListMeta{ResourceVersion: "99", Continue: "next-page", RemainingItemCount: ptrTo(int64(7))}}
	l.Items = append(l.Items, full,
		corev1.PersistentVolumeClaim{}, // nothing at all
		corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "apps"}},
		corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "no-class", Namespace: "b", DeletionTimestamp: &zero},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &empty, VolumeMode: &odd,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1500m")}}},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending, Capacity: corev1.ResourceList{corev1.ResourceStorage: {}}}},
	)
	for i := range 20 {
		c := full.DeepCopy()
		c.Name, c.DeletionTimestamp = fmt.Sprint("copy-", i), nil
		c.Spec.Resources.Requests[corev1.ResourceStorage] = *resource.NewQuantity(int64(i)<<30, resource.BinarySI)
		l.Items = append(l.Items, *c)
	}
	return l
}

// The skimmed list reads what the generated decoders read, field for field.
func TestSkimClaimListReadsWhatTheDecoderReads(t *testing.T) {
	body := encodeClaimList(t, sampleClaims())
	want, err := decodedClaims(t, body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := skimClaimList(body)
	if err != nil {
		t.Fatal(err)
	}
	if !sameClaimPage(got, want) {
		t.Fatalf("skimmed:\n%+v\ndecoded:\n%+v", got, want)
	}
	if got.resourceVersion != "99" || got.continue_ != "next-page" || len(got.claims) != 24 {
		t.Fatalf("page: rv %q, continue %q, %d claims", got.resourceVersion, got.continue_, len(got.claims))
	}
}

func TestSkimClaimListRefuses(t *testing.T) {
	body := encodeClaimList(t, sampleClaims())
	pod := &corev1.PodList{Items: []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "p"}}}}
	pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	var podBody bytes.Buffer
	if err := claimListCodec(t).Encode(pod, &podBody); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"JSON":         []byte(`{"kind":"PersistentVolumeClaimList","items":[]}`),
		"another kind": podBody.Bytes(),
		"truncated":    body[:len(body)-3],
		"bad quantity": bytes.Replace(body, []byte("10Gi"), []byte("10Gx"), 1),
	} {
		if _, err := skimClaimList(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Where both read a body, they read it alike; whatever the generated
// decoders read, the skim reads as the apiserver would encode it (the skim
// may refuse wire-level oddities the decoders skip, such as mismatched
// groups: the list is then retried, as after any error).
func FuzzSkimClaimList(f *testing.F) {
	f.Add(encodeClaimList(f, sampleClaims()))
	f.Add(encodeClaimList(f, &corev1.PersistentVolumeClaimList{}))
	f.Fuzz(func(t *testing.T, body []byte) {
		var l corev1.PersistentVolumeClaimList
		if _, _, err := claimListCodec(t).Decode(body, nil, &l); err != nil {
			return
		}
		want := pageOf(&l)
		if got, err := skimClaimList(body); err == nil && !sameClaimPage(got, want) {
			t.Fatalf("skimmed:\n%+v\ndecoded:\n%+v", got, want)
		}
		got, err := skimClaimList(encodeClaimList(t, &l))
		if err != nil {
			t.Fatalf("the decoder read it, the skim did not read it re-encoded: %v", err)
		}
		if !sameClaimPage(got, want) {
			t.Fatalf("skimmed re-encoded:\n%+v\ndecoded:\n%+v", got, want)
		}
	})
}

func sameClaimPage(a, b claimPage) bool {
	if a.resourceVersion != b.resourceVersion || a.continue_ != b.continue_ || len(a.claims) != len(b.claims) {
		return false
	}
	for i := range a.claims {
		x, y := a.claims[i], b.claims[i]
		if !sameQuantity(x.request, y.request) || !sameQuantity(x.capacity, y.capacity) ||
			(x.deletion == nil) != (y.deletion == nil) || (x.deletion != nil && !x.deletion.Equal(y.deletion)) {
			return false
		}
		x.request, y.request, x.capacity, y.capacity, x.deletion, y.deletion = nil, nil, nil, nil, nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
