package webhook

import (
	"bytes"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	sigsjson "sigs.k8s.io/json"

	"github.com/clonegate/clonegate/webhook/rules"
)

// The fuzz targets run with `make fuzz` (FUZZTIME each); plain `go test`
// replays their seeds and the committed corpus in testdata/fuzz. Whatever the
// body, each handler must answer within seconds with an AdmissionReview, and
// never allow what the rules deny: a clone smaller than its 5Gi source
// (validating), a cross-namespace source (mutating).

// oracleReview is what a review the handlers allow must decode into: the
// fields clonegate reads, typed as k8s.io/api types them, decoded as the
// apiserver's clients decode JSON (case-sensitively). Fields clonegate does
// not read are not looked at (see objects.go).
type oracleReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID       types.UID               `json:"uid"`
		Kind      metav1.GroupVersionKind `json:"kind"`
		Namespace string                  `json:"namespace"`
		Operation admissionv1.Operation   `json:"operation"`
		UserInfo  json.RawMessage         `json:"userInfo"`
		Object    json.RawMessage         `json:"object"`
	} `json:"request"`
}

// oracleClaim is what the rules read of a claim.
type oracleClaim struct {
	Spec struct {
		Resources struct {
			Requests struct {
				Storage *resource.Quantity `json:"storage"`
			} `json:"requests"`
		} `json:"resources"`
		DataSource    *corev1.TypedLocalObjectReference `json:"dataSource"`
		DataSourceRef *corev1.TypedObjectReference      `json:"dataSourceRef"`
	} `json:"spec"`
}

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
		var review oracleReview
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil || review.Request == nil ||
			review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
			t.Fatalf("%s: allowed a body that is no AdmissionReview (%v)", path, err)
		}
		req := review.Request
		if req.UID == "" || resp.UID != req.UID {
			t.Fatalf("%s: allowed with uid %q for a request with uid %q", path, resp.UID, req.UID)
		}
		if u := bytes.TrimSpace(req.UserInfo); len(u) > 0 && u[0] != '{' && string(u) != "null" {
			t.Fatalf("%s: allowed a review whose userInfo is %s", path, u)
		}
		if req.Operation != admissionv1.Create || path == ValidateStatefulSetPath || path == ValidatePodPath {
			continue
		}
		claim := &oracleClaim{}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(req.Object, claim); err != nil {
			t.Fatalf("%s: allowed a CREATE whose object is no claim: %v", path, err)
		}
		spec := &corev1.PersistentVolumeClaimSpec{DataSource: claim.Spec.DataSource, DataSourceRef: claim.Spec.DataSourceRef}
		if path == MutatePath {
			if ref := spec.DataSourceRef; ref != nil && ref.Namespace != nil && *ref.Namespace != "" && *ref.Namespace != req.Namespace {
				t.Fatalf("mutate: allowed a claim in %q with a source in %q", req.Namespace, *ref.Namespace)
			}
			continue
		}
		if src, ok := rules.SourceOf(req.Namespace, spec); ok && src.IsClone() {
			size := claim.Spec.Resources.Requests.Storage
			if size == nil || size.Cmp(rvSourceSize) < 0 {
				t.Fatalf("validate: allowed a clone of a %s source requesting %v", &rvSourceSize, size)
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
