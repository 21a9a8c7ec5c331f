package webhook

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"testing"

	"go.uber.org/zap/zapcore"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/clonegate/clonegate/webhook/rules"
)

// These benchmarks keep the handlers' cost from creeping back up: run them
// with `make bench-go`, and compare with a saved baseline with
// `make bench-compare`. Each goes through controller-runtime's
// admission.Webhook.Handle, as a review from the apiserver does, with the
// source already known (an in-memory FactFinder), so they time the handler
// and not the cluster.

// knownFacts answers every lookup with the same facts, as a cache hit does.
type knownFacts rules.Facts

func (f knownFacts) Facts(context.Context, string, *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
	return rules.Facts(f), nil
}

func benchClaim(source *corev1.TypedLocalObjectReference) *corev1.PersistentVolumeClaim {
	class := "csi"
	fs := corev1.PersistentVolumeFilesystem
	c := &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: "clone", Namespace: "apps", UID: "6f0f5c1e-2b7a-4a51-9d49-2b0c8b0d3f10"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}},
			StorageClassName: &class,
			VolumeMode:       &fs,
			DataSource:       source,
		},
	}
	if source != nil {
		c.Spec.DataSourceRef = &corev1.TypedObjectReference{APIGroup: source.APIGroup, Kind: source.Kind, Name: source.Name}
	}
	return c
}

func benchRequest(b *testing.B, claim *corev1.PersistentVolumeClaim) admission.Request {
	raw, err := json.Marshal(claim)
	if err != nil {
		b.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "4b3e2f8e-0d1c-4c59-9a3a-0f8f5f0a1b2c",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"},
		Name:      claim.Name,
		Namespace: claim.Namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// benchLogger is the logger `clonegate serve` runs with (text, info), writing
// nowhere: the handlers pay for whatever logging they do, as in production.
var benchLogger = sync.OnceFunc(func() {
	log.SetLogger(zap.New(func(o *zap.Options) {
		o.Development, o.Level = true, zapcore.InfoLevel
	}, zap.WriteTo(io.Discard)))
})

func benchHandle(b *testing.B, wh *admission.Webhook, req admission.Request, wantPatches int) {
	b.Helper()
	benchLogger()
	wh.LogConstructor = RequestLog // as clonegate serve runs them
	ctx := context.Background()
	if resp := wh.Handle(ctx, req); !resp.Allowed || len(resp.Patches) != wantPatches {
		b.Fatalf("allowed=%v patches=%v result=%+v", resp.Allowed, resp.Patches, resp.Result)
	}
	b.ReportAllocs()
	for b.Loop() {
		wh.Handle(ctx, req)
	}
}

// BenchmarkValidateClone: a clone of a bound CSI claim, allowed with no
// findings — the review clonegate answers most.
func BenchmarkValidateClone(b *testing.B) {
	fs := corev1.PersistentVolumeFilesystem
	class := "csi"
	source := benchClaim(nil)
	source.Name, source.Spec.VolumeName = "src", "pv-src"
	source.Spec.VolumeMode = &fs
	source.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: source.Spec.Resources.Requests}
	facts := knownFacts{
		Complete:     true,
		SourceClaim:  source,
		SourceVolume: &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-src"}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.example.com"}}}},
		Class:        &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Provisioner: "csi.example.com"},
	}
	v := &CloneValidator{Policy: &rules.Policy{}, Facts: facts}
	wh := admission.WithValidator[*corev1.PersistentVolumeClaim](scheme, v)
	req := benchRequest(b, benchClaim(&corev1.TypedLocalObjectReference{Kind: rules.KindClaim, Name: "src"}))
	benchHandle(b, wh, req, 0)
}

// BenchmarkMutateSnapshotDefault: a restore whose VolumeSnapshot source has
// no apiGroup, defaulted with a two-operation patch.
func BenchmarkMutateSnapshotDefault(b *testing.B) {
	wh := &admission.Webhook{Handler: &SourceDefaulter{Policy: &rules.Policy{}}}
	req := benchRequest(b, benchClaim(&corev1.TypedLocalObjectReference{Kind: rules.KindSnapshot, Name: "snap"}))
	benchHandle(b, wh, req, 2)
}

// BenchmarkMutateUnchanged: a claim with nothing to default (matchConditions
// keep these away in a cluster, but a hand-written registration may not):
// allowed with no patch computed.
func BenchmarkMutateUnchanged(b *testing.B) {
	group := rules.SnapshotAPIGroup
	wh := &admission.Webhook{Handler: &SourceDefaulter{Policy: &rules.Policy{}}}
	req := benchRequest(b, benchClaim(&corev1.TypedLocalObjectReference{APIGroup: &group, Kind: rules.KindSnapshot, Name: "snap"}))
	benchHandle(b, wh, req, 0)
}
