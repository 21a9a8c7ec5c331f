package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/clonegate/clonegate/webhook/rules"
)

// These tests send reviews through the handlers `clonegate serve` registers
// (NewHandlers), as the apiserver does; the rules themselves are tested in
// rules.

// send posts a review of obj to h as the apiserver would, with the namespace
// apps and the object as the old object too, and returns the answer.
func send(t testing.TB, h http.Handler, op admissionv1.Operation, obj runtime.Object) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "uid-1", Kind: metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
			Namespace: "apps", Name: obj.(metav1.Object).GetName(), Operation: op,
			Object: runtime.RawExtension{Raw: raw}, OldObject: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp := rvAnswer(t, rvPost(t, h, body, "application/json"))
	if resp.UID != "uid-1" {
		t.Errorf("answered uid %q, want uid-1", resp.UID)
	}
	return resp
}

// patches decodes an answer's JSON patch.
func patches(t *testing.T, resp *admissionv1.AdmissionResponse) []jsonpatch.JsonPatchOperation {
	t.Helper()
	if len(resp.Patch) == 0 {
		return nil
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Errorf("patch type %v, want JSONPatch", resp.PatchType)
	}
	var ops []jsonpatch.JsonPatchOperation
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatalf("the patch %q is no JSON patch: %v", resp.Patch, err)
	}
	return ops
}

func pvc(size string, source *corev1.TypedLocalObjectReference, ref *corev1.TypedObjectReference) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: "clone"}, // namespace comes from the request
		Spec: corev1.PersistentVolumeClaimSpec{
			Resources:     corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
			DataSource:    source,
			DataSourceRef: ref,
		},
	}
}

func TestSourceDefaulterHandle(t *testing.T) {
	group := rules.SnapshotAPIGroup
	wh := NewHandlers(Config{Policy: &rules.Policy{}}).Mutate
	cases := []struct {
		name        string
		op          admissionv1.Operation
		claim       *corev1.PersistentVolumeClaim
		allowed     bool
		code        int32
		patches     []jsonpatch.JsonPatchOperation
		warnings    int
		causeFields []string
	}{{
		name:    "patches only the apiGroup it defaults, nothing the typed round trip adds",
		op:      admissionv1.Create,
		claim:   pvc("1Gi", &corev1.TypedLocalObjectReference{Kind: rules.KindSnapshot, Name: "s"}, nil),
		allowed: true, warnings: 1,
		patches: []jsonpatch.JsonPatchOperation{{Operation: "add", Path: "/spec/dataSource/apiGroup", Value: group}},
	}, {
		name:    "patches both fields together",
		op:      admissionv1.Create,
		claim:   pvc("1Gi", &corev1.TypedLocalObjectReference{Kind: rules.KindSnapshot, Name: "s"}, &corev1.TypedObjectReference{Kind: rules.KindSnapshot, Name: "s"}),
		allowed: true, warnings: 2,
		patches: []jsonpatch.JsonPatchOperation{
			{Operation: "add", Path: "/spec/dataSource/apiGroup", Value: group},
			{Operation: "add", Path: "/spec/dataSourceRef/apiGroup", Value: group},
		},
	}, {
		name:    "removes a dataSourceRef namespace naming the claim's own",
		op:      admissionv1.Create,
		claim:   pvc("1Gi", nil, &corev1.TypedObjectReference{Kind: rules.KindClaim, Name: "src", Namespace: ptr("apps")}),
		allowed: true, warnings: 1,
		patches: []jsonpatch.JsonPatchOperation{{Operation: "remove", Path: "/spec/dataSourceRef/namespace"}},
	}, {
		name:    "returns no patch when nothing changes",
		op:      admissionv1.Create,
		claim:   pvc("1Gi", &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: rules.KindSnapshot, Name: "s"}, nil),
		allowed: true,
	}, {
		name:    "denies a cross-namespace source as Forbidden with its field cause, taking the namespace from the request",
		op:      admissionv1.Create,
		claim:   pvc("1Gi", nil, &corev1.TypedObjectReference{Kind: rules.KindClaim, Name: "src", Namespace: ptr("other")}),
		allowed: false, code: http.StatusForbidden, causeFields: []string{"spec.dataSourceRef.namespace"},
	}, {
		name:    "keeps its warning when it denies",
		op:      admissionv1.Create,
		claim:   pvc("1Gi", nil, &corev1.TypedObjectReference{Kind: rules.KindSnapshot, Name: "s", Namespace: ptr("other")}),
		allowed: false, code: http.StatusForbidden, warnings: 1, causeFields: []string{"spec.dataSourceRef.namespace"},
	}, {
		name:    "allows an UPDATE untouched",
		op:      admissionv1.Update,
		claim:   pvc("1Gi", &corev1.TypedLocalObjectReference{Kind: rules.KindSnapshot, Name: "s"}, nil),
		allowed: true,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := send(t, wh, c.op, c.claim)
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed = %v, want %v (result %+v)", resp.Allowed, c.allowed, resp.Result)
			}
			if diff := cmp.Diff(c.patches, patches(t, resp)); diff != "" {
				t.Errorf("patches (-want +got):\n%s", diff)
			}
			if len(resp.Warnings) != c.warnings {
				t.Errorf("warnings = %q, want %d", resp.Warnings, c.warnings)
			}
			checkDenial(t, resp, c.code, c.causeFields)
		})
	}
}

func TestCloneValidatorHandle(t *testing.T) {
	src := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: "apps"},
		Spec:       corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}}},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
	clone := &corev1.TypedLocalObjectReference{Kind: rules.KindClaim, Name: "src"}
	classy := src.DeepCopy()
	classy.Spec.StorageClassName = ptr("fast")
	validator := func(f FactFinder, p *rules.Policy) http.Handler {
		return NewHandlers(Config{Policy: p, Facts: f}).Validate
	}
	cases := []struct {
		name        string
		wh          http.Handler
		op          admissionv1.Operation
		claim       *corev1.PersistentVolumeClaim
		allowed     bool
		code        int32
		warnings    int
		causeFields []string
	}{{
		name: "denies an undersized clone as Forbidden with the size cause",
		wh:   validator(knownFacts{Complete: true, SourceClaim: src}, &rules.Policy{}),
		op:   admissionv1.Create, claim: pvc("1Gi", clone, nil),
		code: http.StatusForbidden, causeFields: []string{"spec.resources.requests.storage"},
		// The clone names no class and there is no default: a warning rides along.
		warnings: 1,
	}, {
		name: "warns of a missing source and allows it",
		wh:   validator(knownFacts{Complete: true}, &rules.Policy{}),
		op:   admissionv1.Create, claim: pvc("1Gi", clone, nil),
		allowed: true, warnings: 1,
	}, {
		name: "admits a clone its cache would deny when the apiserver says otherwise (a source recreated a moment ago)",
		wh:   validator(staleFacts{cached: knownFacts{Complete: true, SourceClaim: deleting(classy)}, fresh: knownFacts{Complete: true, SourceClaim: classy}}, &rules.Policy{}),
		op:   admissionv1.Create, claim: pvc("5Gi", clone, nil),
		allowed: true, warnings: 1,
	}, {
		name: "denies on what the apiserver says when it confirms the cache",
		wh:   validator(staleFacts{cached: knownFacts{Complete: true, SourceClaim: deleting(classy)}, fresh: knownFacts{Complete: true, SourceClaim: classy}}, &rules.Policy{}),
		op:   admissionv1.Create, claim: pvc("1Gi", clone, nil),
		code: http.StatusForbidden, causeFields: []string{"spec.resources.requests.storage"}, warnings: 1,
	}, {
		name: "fails closed when a denial cannot be confirmed",
		wh:   validator(staleFacts{cached: knownFacts{Complete: true, SourceClaim: deleting(classy)}, freshErr: context.DeadlineExceeded}, &rules.Policy{}),
		op:   admissionv1.Create, claim: pvc("5Gi", clone, nil),
		code: http.StatusForbidden,
	}, {
		name: "fails closed when the source cannot be looked up",
		wh:   validator(failingFacts{}, &rules.Policy{}),
		op:   admissionv1.Create, claim: pvc("1Gi", clone, nil),
		code: http.StatusForbidden,
	}, {
		name: "never blocks an UPDATE, whatever the source",
		wh:   validator(failingFacts{}, &rules.Policy{}),
		op:   admissionv1.Update, claim: pvc("1Gi", clone, nil),
		allowed: true,
	}, {
		name: "never blocks a DELETE",
		wh:   validator(failingFacts{}, &rules.Policy{}),
		op:   admissionv1.Delete, claim: pvc("1Gi", clone, nil),
		allowed: true,
	}, {
		name: "leaves exempt namespaces alone without a lookup",
		wh:   validator(failingFacts{}, &rules.Policy{ExemptNamespaces: []string{"apps"}}),
		op:   admissionv1.Create, claim: pvc("1Gi", clone, nil),
		allowed: true,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := send(t, c.wh, c.op, c.claim)
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed = %v, want %v (result %+v)", resp.Allowed, c.allowed, resp.Result)
			}
			if len(resp.Warnings) != c.warnings {
				t.Errorf("warnings = %q, want %d", resp.Warnings, c.warnings)
			}
			if c.causeFields != nil {
				checkDenial(t, resp, c.code, c.causeFields)
			}
		})
	}
}

// checkDenial checks a denial's status code and that causeFields are among
// its causes.
func checkDenial(t *testing.T, resp *admissionv1.AdmissionResponse, code int32, causeFields []string) {
	t.Helper()
	if resp.Allowed {
		return
	}
	if resp.Result == nil || resp.Result.Code != code {
		t.Fatalf("result = %+v, want code %d", resp.Result, code)
	}
	got := map[string]bool{}
	if resp.Result.Details != nil {
		for _, c := range resp.Result.Details.Causes {
			got[c.Field] = true
		}
	}
	for _, f := range causeFields {
		if !got[f] {
			t.Errorf("causes %+v lack field %s", resp.Result.Details, f)
		}
	}
}

// staleFacts answers from a cache (cached) and, asked past it, from the
// apiserver (fresh): the two disagree when the cache is a moment behind.
type staleFacts struct {
	cached, fresh knownFacts
	freshErr      error
}

func (s staleFacts) Facts(context.Context, string, *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
	return rules.Facts(s.cached), nil
}

func (s staleFacts) FreshFacts(context.Context, string, *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
	return rules.Facts(s.fresh), s.freshErr
}

func deleting(c *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	c = c.DeepCopy()
	c.DeletionTimestamp = &metav1.Time{}
	return c
}

type failingFacts struct{}

func (failingFacts) Facts(context.Context, string, *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
	return rules.Facts{}, context.DeadlineExceeded
}

func ptr[T any](v T) *T { return &v }
