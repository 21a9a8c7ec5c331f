package webhook

import (
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/clonegate/clonegate/webhook/rules"
)

// The fuzz targets run with `make fuzz` (FUZZTIME each); plain `go test`
// replays their seeds and the committed corpus in testdata/fuzz. Whatever the
// body, each handler must answer within seconds with an AdmissionReview, and
// never allow what the rules deny: a clone smaller than its 5Gi source
// (validating), a cross-namespace source (mutating).

var reviewDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	if err := admissionv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return serializer.NewCodecFactory(s).UniversalDeserializer()
}()

// checkAnswer posts body to every handler and checks every invariant.
func checkAnswer(t *testing.T, body []byte) {
	for _, path := range []string{MutatePath, ValidatePath, ValidateStatefulSetPath, ValidatePodPath} {
		h := rvHandlersByPath[path]
		resp := rvAnswer(t, rvPost(t, h, body, "application/json"))
		if !resp.Allowed {
			if resp.Result == nil || resp.Result.Message == "" || resp.Result.Code < 400 {
				t.Fatalf("%s: refused without a reason: %+v", path, resp)
			}
			continue
		}
		// Allowed: the body must have been a review the rules accept.
		var review admissionv1.AdmissionReview
		if _, _, err := reviewDecoder.Decode(body, nil, &review); err != nil || review.Request == nil {
			t.Fatalf("%s: allowed a body that is no AdmissionReview (%v)", path, err)
		}
		req := review.Request
		if req.UID == "" || resp.UID != req.UID {
			t.Fatalf("%s: allowed with uid %q for a request with uid %q", path, resp.UID, req.UID)
		}
		if req.Operation != admissionv1.Create || path == ValidateStatefulSetPath || path == ValidatePodPath {
			continue
		}
		claim := &corev1.PersistentVolumeClaim{}
		if err := json.Unmarshal(req.Object.Raw, claim); err != nil {
			t.Fatalf("%s: allowed a CREATE whose object is no claim: %v", path, err)
		}
		if path == MutatePath {
			if ref := claim.Spec.DataSourceRef; ref != nil && ref.Namespace != nil && *ref.Namespace != "" && *ref.Namespace != req.Namespace {
				t.Fatalf("mutate: allowed a claim in %q with a source in %q", req.Namespace, *ref.Namespace)
			}
			continue
		}
		if src, ok := rules.SourceOf(req.Namespace, &claim.Spec); ok && src.IsClone() {
			size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
			if !ok || size.Cmp(rvSourceSize) < 0 {
				t.Fatalf("validate: allowed a clone of a %s source requesting %v", &rvSourceSize, claim.Spec.Resources.Requests)
			}
		}
	}
}

// FuzzReview sends arbitrary bodies, seeded with real reviews.
func FuzzReview(f *testing.F) {
	for _, seed := range []string{
		rvReview("u1", "apps", rvClaim("5Gi", rvClone)),
		rvReview("u2", "apps", rvClaim("1Gi", rvClone)),
		rvReview("u3", "apps", rvClaim("1Gi", rvCrossNS)),
		rvReview("u4", "apps", rvClaim("1Gi", rvSnapNoGroup)),
		rvReview("u5", "apps", rvClaim("1e1000", rvClone)),
		`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u6","kind":{"version":"v1","kind":"PersistentVolumeClaim"},"namespace":"apps","operation":"UPDATE","object":{},"oldObject":{}}}`,
		`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}`,
		`{}`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAnswer(t, body)
	})
}

// FuzzClaim builds well-formed reviews of claims with fuzzed sizes and
// sources, so the fuzzer spends its time on the rules' inputs rather than on
// JSON syntax.
func FuzzClaim(f *testing.F) {
	f.Add("1Gi", "PersistentVolumeClaim", "", "src", "", "", "", "", "CREATE")
	f.Add("5Gi", "PersistentVolumeClaim", "", "src", "PersistentVolumeClaim", "", "src", "", "CREATE")
	f.Add("5368709119", "PersistentVolumeClaim", "", "src", "", "", "", "", "CREATE")
	f.Add("1Gi", "", "", "", "PersistentVolumeClaim", "", "src", "team-a", "CREATE")
	f.Add("1Gi", "", "", "", "VolumeSnapshot", "snapshot.storage.k8s.io", "s", "apps", "CREATE")
	f.Add("1Gi", "VolumeSnapshot", "", "nightly", "", "", "", "", "CREATE")
	f.Add("9999999999999999999Ei", "PersistentVolumeClaim", "", "src", "", "", "", "", "CREATE")
	f.Add("-1Gi", "PersistentVolumeClaim", "", "src", "", "", "", "", "UPDATE")
	f.Fuzz(func(t *testing.T, size, dsKind, dsGroup, dsName, refKind, refGroup, refName, refNS, op string) {
		spec := map[string]any{
			"accessModes": []string{"ReadWriteOnce"},
			"resources":   map[string]any{"requests": map[string]any{"storage": size}},
		}
		if dsKind != "" || dsName != "" {
			ds := map[string]any{"kind": dsKind, "name": dsName}
			if dsGroup != "" {
				ds["apiGroup"] = dsGroup
			}
			spec["dataSource"] = ds
		}
		if refKind != "" || refName != "" || refNS != "" {
			ref := map[string]any{"kind": refKind, "name": refName}
			if refGroup != "" {
				ref["apiGroup"] = refGroup
			}
			if refNS != "" {
				ref["namespace"] = refNS
			}
			spec["dataSourceRef"] = ref
		}
		object, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
			"metadata": map[string]any{"name": "clone"}, "spec": spec})
		if err != nil {
			t.Skip()
		}
		request, err := json.Marshal(map[string]any{"uid": "fuzz", "namespace": "apps", "operation": op,
			"kind": map[string]any{"version": "v1", "kind": "PersistentVolumeClaim"}, "object": json.RawMessage(object)})
		if err != nil {
			t.Skip()
		}
		checkAnswer(t, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":`+string(request)+`}`))
	})
}
