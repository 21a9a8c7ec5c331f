package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.uber.org/zap/zapcore"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/clonegate/clonegate/webhook/rules"
)

// These benchmarks keep the handlers' cost from creeping back up: run them
// with `make bench-go`, and compare with a saved baseline with
// `make bench-compare`. Each sends a review body through a webhook's whole
// HTTP handler, as NewHandlers builds it for `clonegate serve` (everything
// but TLS), with the source already known (an in-memory FactFinder, or, for
// ValidateCloneLookedUp, the SourceLookup over filled caches), so they time
// the handler and not the cluster.

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

// benchBody is the AdmissionReview the apiserver sends for a CREATE of obj.
func benchBody(b testing.TB, obj runtime.Object) []byte {
	raw, err := json.Marshal(obj)
	if err != nil {
		b.Fatal(err)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	m := obj.(metav1.Object)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "4b3e2f8e-0d1c-4c59-9a3a-0f8f5f0a1b2c",
			Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"},
			Name:      m.GetName(),
			Namespace: m.GetNamespace(),
			Operation: admissionv1.Create,
			UserInfo:  authenticationv1.UserInfo{Username: "system:serviceaccount:apps:deployer", Groups: []string{"system:serviceaccounts", "system:authenticated"}},
			Object:    runtime.RawExtension{Raw: raw},
			Options:   runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl-client-side-apply","fieldValidation":"Strict"}`)},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// benchLogger is the logger `clonegate serve` runs with (text, info), writing
// nowhere: the handlers pay for whatever logging they do, as in production.
var benchLogger = sync.OnceFunc(func() {
	log.SetLogger(zap.New(func(o *zap.Options) {
		o.Development, o.Level = true, zapcore.InfoLevel
	}, zap.WriteTo(io.Discard)))
})

// discard is a ResponseWriter that keeps the last answer.
type discard struct {
	header http.Header
	last   bytes.Buffer
}

func (d *discard) Header() http.Header { return d.header }
func (d *discard) Write(p []byte) (int, error) {
	d.last.Reset()
	return d.last.Write(p)
}
func (d *discard) WriteHeader(int) {}

// benchServe sends body to h over and over, as the webhook server does once
// TLS and HTTP parsing are done, after checking the answer once.
func benchServe(b *testing.B, h http.Handler, body []byte, wantPatch bool) {
	b.Helper()
	serve := benchServer(b, h, body, wantPatch)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		serve()
	}
}

// benchServer checks h's answer to body once, and returns what sends body
// to h again.
func benchServer(t testing.TB, h http.Handler, body []byte, wantPatch bool) func() {
	t.Helper()
	benchLogger()
	w := &discard{header: http.Header{}}
	reader := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, "/", io.NopCloser(reader))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(body))
	h.ServeHTTP(w, req)
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(w.last.Bytes(), &review); err != nil || review.Response == nil ||
		!review.Response.Allowed || (len(review.Response.Patch) > 0) != wantPatch {
		t.Fatalf("answer %s (%v)", w.last.Bytes(), err)
	}
	return func() {
		reader.Reset(body)
		h.ServeHTTP(w, req)
	}
}

// validateClone is a review of a clone of a bound CSI claim, allowed with no
// findings — the review clonegate answers most.
func validateClone(t testing.TB) (http.Handler, []byte, bool) {
	h := NewHandlers(Config{Policy: &rules.Policy{}, Facts: validateCloneFacts()}).Validate
	return h, benchBody(t, benchClaim(&corev1.TypedLocalObjectReference{Kind: rules.KindClaim, Name: "src"})), false
}

// validateCloneFacts are the facts of validateClone's source: a bound CSI
// claim as large as the clone, its volume and the class.
func validateCloneFacts() knownFacts {
	fs := corev1.PersistentVolumeFilesystem
	source := benchClaim(nil)
	source.Name, source.Spec.VolumeName = "src", "pv-src"
	source.Spec.VolumeMode = &fs
	source.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: source.Spec.Resources.Requests}
	return knownFacts{
		Complete:     true,
		SourceClaim:  source,
		SourceVolume: &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-src"}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.example.com"}}}},
		Class:        &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: *source.Spec.StorageClassName}, Provisioner: "csi.example.com"},
	}
}

// validateCloneLookedUp is validateClone judged by the SourceLookup that
// `clonegate serve` builds: the source from a claim index, its volume and
// the class from informer stores, as on a cache hit. A live read fails it.
func validateCloneLookedUp(t testing.TB) (http.Handler, []byte, bool) {
	_, body, _ := validateClone(t)
	facts := rules.Facts(validateCloneFacts())
	claims := NewClaimIndex()
	if err := (claimStore{claims}).Add(facts.SourceClaim); err != nil {
		t.Fatal(err)
	}
	volumes := toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)
	classes := toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)
	if err := volumes.Add(facts.SourceVolume); err != nil {
		t.Fatal(err)
	}
	if err := classes.Add(facts.Class); err != nil {
		t.Fatal(err)
	}
	lookup := &SourceLookup{Claims: claims, Volumes: volumes, Classes: classes, Live: noLiveReads{t}}
	return NewHandlers(Config{Policy: &rules.Policy{}, Facts: lookup}).Validate, body, false
}

// noLiveReads fails the test on any read: a cache hit reads nothing live.
type noLiveReads struct{ t testing.TB }

func (r noLiveReads) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.t.Errorf("a live read of %T %s on a cache hit", obj, key)
	return errors.New("no live reads")
}

func (r noLiveReads) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	r.t.Errorf("a live list of %T on a cache hit", list)
	return errors.New("no live reads")
}

// benchReviews are the reviews the benchmarks send: each webhook's most
// common answer, and the mutating webhook's patch.
var benchReviews = []struct {
	name  string
	setup func(testing.TB) (h http.Handler, body []byte, wantPatch bool)
}{
	{"ValidateClone", validateClone},
	{"ValidateCloneLookedUp", validateCloneLookedUp},
	// the same clone as the apiserver sends it for a service account's
	// `kubectl apply`: last-applied annotation, managed fields, status, and
	// the userInfo of a service account token, none of which the rules read.
	{"ValidateCloneApplied", func(t testing.TB) (http.Handler, []byte, bool) {
		h, body, _ := validateClone(t)
		var review map[string]any
		if err := json.Unmarshal(body, &review); err != nil {
			t.Fatal(err)
		}
		req := review["request"].(map[string]any)
		req["requestKind"], req["requestResource"], req["dryRun"] = req["kind"], req["resource"], false
		req["userInfo"] = map[string]any{"username": "system:serviceaccount:apps:deployer", "uid": "0c5e3d84-5f5d-4b8e-9b1f-1f2a9c3e7d41",
			"groups": []string{"system:serviceaccounts", "system:serviceaccounts:apps", "system:authenticated"},
			"extra": map[string][]string{
				"authentication.kubernetes.io/credential-id": {"JTI=7e8b3c2a-1d4f-4c6e-9a0b-5f2e8d1c3b7a"},
				"authentication.kubernetes.io/node-name":     {"node-1"}, "authentication.kubernetes.io/node-uid": {"3b1f0c7e-2a9d-4e5b-8c6f-0d7a1e2b3c4d"},
				"authentication.kubernetes.io/pod-name": {"deployer-7d9f8b6c5-x2kq4"}, "authentication.kubernetes.io/pod-uid": {"9e2d4f1a-6b3c-4a7e-8d0f-2c5b1e9a7d3f"},
			}}
		object := req["object"].(map[string]any)
		meta := object["metadata"].(map[string]any)
		meta["creationTimestamp"] = "2026-11-25T06:00:00Z"
		meta["annotations"] = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"annotations":{},"name":"clone","namespace":"apps"},"spec":{"accessModes":["ReadWriteOnce"],"dataSource":{"kind":"PersistentVolumeClaim","name":"src"},"resources":{"requests":{"storage":"10Gi"}},"storageClassName":"csi"}}` + "\n"}
		meta["labels"] = map[string]string{"app.kubernetes.io/name": "db", "app.kubernetes.io/part-of": "shop"}
		meta["managedFields"] = []any{map[string]any{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "time": "2026-11-25T06:00:00Z", "fieldsType": "FieldsV1",
			"fieldsV1": json.RawMessage(`{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app.kubernetes.io/name":{},"f:app.kubernetes.io/part-of":{}}},"f:spec":{"f:accessModes":{},"f:dataSource":{},"f:dataSourceRef":{},"f:resources":{"f:requests":{".":{},"f:storage":{}}},"f:storageClassName":{},"f:volumeMode":{}}}`)}}
		object["status"] = map[string]any{"phase": "Pending"}
		body, err := json.Marshal(review)
		if err != nil {
			t.Fatal(err)
		}
		return h, body, false
	}},
	// a restore whose VolumeSnapshot source has no apiGroup, defaulted with
	// a two-operation patch.
	{"MutateSnapshotDefault", func(t testing.TB) (http.Handler, []byte, bool) {
		h := NewHandlers(Config{Policy: &rules.Policy{}}).Mutate
		return h, benchBody(t, benchClaim(&corev1.TypedLocalObjectReference{Kind: rules.KindSnapshot, Name: "snap"})), true
	}},
	// a claim with nothing to default (matchConditions keep these away in a
	// cluster, but a hand-written registration may not): allowed with no
	// patch computed.
	{"MutateUnchanged", func(t testing.TB) (http.Handler, []byte, bool) {
		group := rules.SnapshotAPIGroup
		h := NewHandlers(Config{Policy: &rules.Policy{}}).Mutate
		return h, benchBody(t, benchClaim(&corev1.TypedLocalObjectReference{APIGroup: &group, Kind: rules.KindSnapshot, Name: "snap"})), false
	}},
	// a StatefulSet whose one claim template clones a known source, allowed.
	{"ValidateStatefulSet", func(t testing.TB) (http.Handler, []byte, bool) {
		sts := statefulSet(templateSpec("5Gi", cloneOfSrc))
		sts.Namespace = "apps"
		h := NewHandlers(Config{Policy: &rules.Policy{}, Facts: workloadFacts()}).StatefulSet
		return h, benchBody(t, sts), false
	}},
	// a Pod with one generic ephemeral volume cloning a known source, allowed.
	{"ValidatePod", func(t testing.TB) (http.Handler, []byte, bool) {
		p := pod(templateSpec("5Gi", cloneOfSrc))
		p.Namespace = "apps"
		p.Spec.Containers = []corev1.Container{{Name: "app", Image: "registry.example.com/app:1.0"}}
		h := NewHandlers(Config{Policy: &rules.Policy{}, Facts: workloadFacts()}).Pod
		return h, benchBody(t, p), false
	}},
	// the same Pod as a ReplicaSet creates it and the apiserver sends it:
	// owner, labels, managed fields, the service account token volume, a
	// container with env, resources and mounts, none of which the rules read.
	{"ValidatePodApplied", func(t testing.TB) (http.Handler, []byte, bool) {
		p := pod(templateSpec("5Gi", cloneOfSrc))
		p.Namespace, p.GenerateName = "apps", "app-7d9f8b6c5-"
		p.Labels = map[string]string{"app.kubernetes.io/name": "app", "pod-template-hash": "7d9f8b6c5"}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app-7d9f8b6c5", UID: "2f1e0d9c-8b7a-4c6d-9e5f-1a2b3c4d5e6f", Controller: ptr(true), BlockOwnerDeletion: ptr(true)}}
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app.kubernetes.io/name":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"2f1e0d9c-8b7a-4c6d-9e5f-1a2b3c4d5e6f\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:env":{},"f:image":{},"f:name":{},"f:resources":{}}},"f:volumes":{}}}`)}}}
		expiry := int64(3607)
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "kube-api-access-x2kq4", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &expiry}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
		}}}})
		p.Spec.Containers = []corev1.Container{{Name: "app", Image: "registry.example.com/app:1.0",
			Env:          []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "PORT", Value: "8080"}, {Name: "DATA", Value: "/data"}},
			Resources:    corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}},
			VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/data"}, {Name: "kube-api-access-x2kq4", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}}}}
		p.Spec.Tolerations = []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(300))}}
		p.Status.Phase = corev1.PodPending
		h := NewHandlers(Config{Policy: &rules.Policy{}, Facts: workloadFacts()}).Pod
		return h, benchBody(t, p), false
	}},
}

func BenchmarkValidateClone(b *testing.B)         { benchReview(b, "ValidateClone") }
func BenchmarkValidateCloneLookedUp(b *testing.B) { benchReview(b, "ValidateCloneLookedUp") }
func BenchmarkValidateCloneApplied(b *testing.B)  { benchReview(b, "ValidateCloneApplied") }
func BenchmarkMutateSnapshotDefault(b *testing.B) { benchReview(b, "MutateSnapshotDefault") }
func BenchmarkMutateUnchanged(b *testing.B)       { benchReview(b, "MutateUnchanged") }
func BenchmarkValidateStatefulSet(b *testing.B)   { benchReview(b, "ValidateStatefulSet") }
func BenchmarkValidatePod(b *testing.B)           { benchReview(b, "ValidatePod") }
func BenchmarkValidatePodApplied(b *testing.B)    { benchReview(b, "ValidatePodApplied") }

func benchReview(b *testing.B, name string) {
	for _, r := range benchReviews {
		if r.name == name {
			h, body, wantPatch := r.setup(b)
			benchServe(b, h, body, wantPatch)
			return
		}
	}
	b.Fatalf("no review %s", name)
}
