package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/clonegate/clonegate/webhook/rules"
)

// These tests send raw AdmissionReview bodies through the handlers `clonegate
// serve` registers (NewHandlers).

// rvSourceSize is the capacity of the source every clone in these tests copies.
var rvSourceSize = resource.MustParse("5Gi")

// rvSource answers every lookup with a bound 5Gi CSI claim and a class of
// its driver, so the only rule a clone can break here is its size.
type rvSource struct{}

func (rvSource) Facts(_ context.Context, namespace string, _ *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
	class, fs := "csi", corev1.PersistentVolumeFilesystem
	return rules.Facts{
		Complete: true,
		SourceClaim: &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: namespace},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class, VolumeMode: &fs, VolumeName: "pv-src",
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: rvSourceSize}}},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: rvSourceSize}},
		},
		SourceVolume: &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-src"},
			Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.example.com"}}}},
		Class:           &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Provisioner: "csi.example.com"},
		SnapshotsServed: true,
	}, nil
}

var rvHandlers = func() Handlers {
	// Without a logger, controller-runtime keeps every request's logger as
	// a promise to fulfil when one is set: the fuzzer would slow to a crawl.
	log.SetLogger(logr.Discard())
	return NewHandlers(Config{Policy: &rules.Policy{}, Facts: rvSource{}})
}()

var rvHandlersByPath = map[string]http.Handler{MutatePath: rvHandlers.Mutate, ValidatePath: rvHandlers.Validate,
	ValidateStatefulSetPath: rvHandlers.StatefulSet, ValidatePodPath: rvHandlers.Pod}

// rvReview is an AdmissionReview as kube-apiserver v1.37 sends it for a
// `kubectl apply` of a claim (captured, with the object swapped in).
func rvReview(uid, namespace, object string) string {
	return fmt.Sprintf(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":%q,`+
		`"kind":{"group":"","version":"v1","kind":"PersistentVolumeClaim"},"resource":{"group":"","version":"v1","resource":"persistentvolumeclaims"},`+
		`"requestKind":{"group":"","version":"v1","kind":"PersistentVolumeClaim"},"requestResource":{"group":"","version":"v1","resource":"persistentvolumeclaims"},`+
		`"name":"clone","namespace":%q,"operation":"CREATE","userInfo":{"username":"admin","groups":["system:masters","system:authenticated"]},`+
		`"object":%s,"oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl-client-side-apply","fieldValidation":"Strict"}}}`,
		uid, namespace, object)
}

// rvClaim is a claim as the apiserver passes it to admission.
func rvClaim(size, source string) string {
	return fmt.Sprintf(`{"kind":"PersistentVolumeClaim","apiVersion":"v1","metadata":{"name":"clone","namespace":"apps","creationTimestamp":null},`+
		`"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":%q}},"storageClassName":"csi","volumeMode":"Filesystem"%s},"status":{"phase":"Pending"}}`,
		size, source)
}

const (
	rvClone       = `,"dataSource":{"kind":"PersistentVolumeClaim","name":"src"},"dataSourceRef":{"kind":"PersistentVolumeClaim","name":"src"}`
	rvCrossNS     = `,"dataSourceRef":{"kind":"PersistentVolumeClaim","name":"src","namespace":"team-a"}`
	rvSnapNoGroup = `,"dataSource":{"kind":"VolumeSnapshot","name":"nightly"}`
)

// post sends body to h as the apiserver would, and fails the test if the
// handler does not answer within a few seconds.
func rvPost(t testing.TB, h http.Handler, body []byte, contentType string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	if body == nil {
		req = httptest.NewRequest(http.MethodPost, "/", http.NoBody)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { defer close(done); h.ServeHTTP(rec, req) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("handler hung on a %d-byte body", len(body))
	}
	return rec
}

// answer decodes the handler's reply, which must always be an AdmissionReview
// with a response.
func rvAnswer(t testing.TB, rec *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d, want 200 with an AdmissionReview; body %q", rec.Code, rec.Body.String())
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil || review.Response == nil {
		t.Fatalf("the answer is not an AdmissionReview with a response (%v): %q", err, rec.Body.String())
	}
	// controller-runtime answers a body it could not decode (empty, not JSON,
	// wrong content type, too large) without apiVersion and kind.
	undecoded := review.Response.Result != nil && review.Response.UID == "" && review.APIVersion == "" && review.Kind == ""
	if !undecoded && (review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview") {
		t.Errorf("answered as %s %s, want admission.k8s.io/v1 AdmissionReview", review.APIVersion, review.Kind)
	}
	return review.Response
}

func TestMalformedReviews(t *testing.T) {
	huge := `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","padding":"` + strings.Repeat("x", 8<<20) + `"}}`
	cases := []struct {
		name        string
		body        string
		nilBody     bool
		contentType string
		code        int32  // result.code
		message     string // in result.message
	}{
		{name: "not JSON", body: "this is not json", code: 400, message: "the body is not an AdmissionReview"},
		{name: "JSON, not an object", body: `[1,2,3]`, code: 400},
		{name: "an empty body", nilBody: true, code: 400, message: "request body is empty"},
		{name: "a wrong content type", body: rvReview("u1", "apps", rvClaim("1Gi", rvClone)), contentType: "text/plain", code: 400, message: "contentType=text/plain"},
		{name: "no request", body: `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}`, code: 400, message: "request.uid: Required value"},
		{name: "a null request", body: `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":null}`, code: 400, message: "request.uid: Required value"},
		{name: "no uid", body: rvReview("", "apps", rvClaim("1Gi", rvClone)), code: 400, message: "request.uid: Required value"},
		{name: "no operation", body: strings.Replace(rvReview("u1", "apps", rvClaim("1Gi", rvClone)), `"operation":"CREATE",`, "", 1), code: 400, message: "request.operation: Unsupported value"},
		{name: "no object", body: rvReview("u1", "apps", "null"), code: 400, message: "request.object: Required value"},
		{name: "no namespace", body: rvReview("u1", "", rvClaim("1Gi", rvClone)), code: 400, message: "request.namespace: Required value"},
		{name: "a Pod as the object", body: rvReview("u1", "apps", `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`), code: 400},
		{name: "a ConfigMap as the object", body: rvReview("u1", "apps", `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c"},"data":{"spec":"x"}}`), code: 400},
		{name: "a review of Pods", body: strings.ReplaceAll(rvReview("u1", "apps", rvClaim("1Gi", rvClone)), `"kind":"PersistentVolumeClaim"},"resource"`, `"kind":"Pod"},"resource"`), code: 400, message: "request.kind"},
		{name: "an object in another namespace than the request", body: rvReview("u1", "team-a", rvClaim("1Gi", rvCrossNS)), code: 400, message: "does not match the request's namespace"},
		{name: "a size of 1e1000", body: rvReview("u1", "apps", rvClaim("1e1000", rvClone)), code: 403, message: `spec.resources.requests.storage: Invalid value: "10e999": is not a size in bytes`},
		{name: "a size of 1e10000000 (seconds to compare)", body: rvReview("u1", "apps", rvClaim("1e10000000", rvClone)), code: 403, message: "is not a size in bytes"},
		{name: "a negative size", body: rvReview("u1", "apps", rvClaim("-1Gi", rvSnapNoGroup)), code: 403, message: `spec.resources.requests.storage: Invalid value: "-1Gi": must not be negative`},
		{name: "a size of 9999999999999999999Ei", body: rvReview("u1", "apps", rvClaim("9999999999999999999Ei", rvClone)), code: 403, message: "larger than any volume can be"},
		{name: "a size that is no quantity", body: rvReview("u1", "apps", rvClaim("lots", rvClone)), code: 400, message: "quantities must match"},
		{name: "an admission.k8s.io/v1beta1 review", body: strings.Replace(rvReview("u1", "apps", rvClaim("1Gi", rvClone)), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), code: 400, message: "admission.k8s.io/v1beta1 AdmissionReview"},
		{name: "no apiVersion", body: strings.Replace(rvReview("u1", "apps", rvClaim("1Gi", rvClone)), `"apiVersion":"admission.k8s.io/v1",`, "", 1), code: 400, message: "apiVersion: Unsupported value"},
		{name: "another kind of review", body: strings.Replace(rvReview("u1", "apps", rvClaim("1Gi", rvClone)), `"kind":"AdmissionReview"`, `"kind":"TokenReview"`, 1), code: 400, message: "TokenReview"},
		{name: "a body past the size limit", body: huge, code: 413, message: "request entity is too large"},
	}
	for path, h := range map[string]http.Handler{MutatePath: rvHandlers.Mutate, ValidatePath: rvHandlers.Validate} {
		t.Run(path, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					var body []byte
					if !c.nilBody {
						body = []byte(c.body)
					}
					ct := c.contentType
					if ct == "" {
						ct = "application/json"
					}
					resp := rvAnswer(t, rvPost(t, h, body, ct))
					if resp.Allowed {
						t.Fatalf("allowed: %+v", resp)
					}
					if resp.Result == nil || resp.Result.Code != c.code || !strings.Contains(resp.Result.Message, c.message) {
						t.Errorf("result %+v, want code %d and a message with %q", resp.Result, c.code, c.message)
					}
					// The server keeps answering correctly afterwards.
					rvStillServing(t, path, h)
				})
			}
		})
	}
}

// rvStillServing sends the handler a valid review it must allow and one
// it must deny.
func rvStillServing(t *testing.T, path string, h http.Handler) {
	t.Helper()
	good, bad := rvClaim("5Gi", rvClone), rvClaim("1Gi", rvClone)
	if path == MutatePath {
		good, bad = rvClaim("1Gi", rvSnapNoGroup), rvClaim("1Gi", rvCrossNS)
	}
	if resp := rvAnswer(t, rvPost(t, h, []byte(rvReview("ok", "apps", good)), "application/json")); !resp.Allowed || resp.UID != "ok" {
		t.Errorf("afterwards, a valid review was not allowed: %+v", resp)
	}
	if resp := rvAnswer(t, rvPost(t, h, []byte(rvReview("no", "apps", bad)), "application/json")); resp.Allowed || resp.Result.Code != 403 {
		t.Errorf("afterwards, a review to deny was answered %+v", resp)
	}
}

// The guards add nothing to a valid review: what passed before passes now.
func TestValidReviewsUnchanged(t *testing.T) {
	for _, c := range []struct {
		path, object string
		allowed      bool
		patches      bool
	}{
		{ValidatePath, rvClaim("5Gi", rvClone), true, false},
		{ValidatePath, rvClaim("5120Mi", rvClone), true, false},
		{ValidatePath, rvClaim("1Ei", rvClone), true, false},
		{ValidatePath, rvClaim("8191Pi", rvClone), true, false},
		{ValidatePath, rvClaim("5368709119", rvClone), false, false},
		{MutatePath, rvClaim("1Gi", rvSnapNoGroup), true, true},
		{MutatePath, rvClaim("1Gi", rvCrossNS), false, false},
	} {
		h := map[string]http.Handler{MutatePath: rvHandlers.Mutate, ValidatePath: rvHandlers.Validate}[c.path]
		resp := rvAnswer(t, rvPost(t, h, []byte(rvReview("uid-7", "apps", c.object)), "application/json"))
		if resp.Allowed != c.allowed || (len(resp.Patch) > 0) != c.patches || resp.UID != "uid-7" {
			t.Errorf("%s %s: allowed=%v patch=%s uid=%s result=%+v; want allowed=%v patches=%v", c.path, c.object, resp.Allowed, resp.Patch, resp.UID, resp.Result, c.allowed, c.patches)
		}
	}
}

// rvWorkload is a review of a workload as kube-apiserver sends it.
func rvWorkload(uid, namespace, operation, kind, object string) string {
	return fmt.Sprintf(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":%q,"kind":%s,`+
		`"name":"w","namespace":%q,"operation":%q,"userInfo":{"username":"admin"},"object":%s,"oldObject":null}}`,
		uid, kind, namespace, operation, object)
}

const (
	rvStatefulSetKind = `{"group":"apps","version":"v1","kind":"StatefulSet"}`
	rvPodKind         = `{"group":"","version":"v1","kind":"Pod"}`
	// Each clones src (5Gi) into 1Gi: denied.
	rvStatefulSet = `{"kind":"StatefulSet","apiVersion":"apps/v1","metadata":{"name":"w"%s},"spec":{"selector":{},"template":{"spec":{"containers":[]}},` +
		`"volumeClaimTemplates":[{"metadata":{"name":"data"},"spec":{"resources":{"requests":{"storage":%q}},"dataSource":{"kind":"PersistentVolumeClaim","name":"src"}}}]}}`
	rvPod = `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"w"%s},"spec":{"containers":[],"volumes":[{"name":"v","ephemeral":{"volumeClaimTemplate":` +
		`{"spec":{"resources":{"requests":{"storage":%q}},"dataSource":{"kind":"PersistentVolumeClaim","name":"src"}}}}}]}}`
)

// The StatefulSet and Pod webhooks take the same path, with the same guards.
func TestMalformedWorkloadReviews(t *testing.T) {
	for _, w := range []struct {
		path, kind, object string
	}{{ValidateStatefulSetPath, rvStatefulSetKind, rvStatefulSet}, {ValidatePodPath, rvPodKind, rvPod}} {
		h := rvHandlersByPath[w.path]
		obj := func(size string) string { return fmt.Sprintf(w.object, "", size) }
		valid := rvWorkload("u1", "apps", "CREATE", w.kind, obj("5Gi"))
		t.Run(w.path, func(t *testing.T) {
			for _, c := range []struct {
				name, body, message string
				code                int32
			}{
				{"not JSON", "{", "the body is not an AdmissionReview", 400},
				{"no uid", rvWorkload("", "apps", "CREATE", w.kind, obj("5Gi")), "request.uid: Required value", 400},
				{"an unknown operation", rvWorkload("u1", "apps", "PATCH", w.kind, obj("5Gi")), "request.operation: Unsupported value", 400},
				{"no namespace", rvWorkload("u1", "", "CREATE", w.kind, obj("5Gi")), "request.namespace: Required value", 400},
				{"no object", rvWorkload("u1", "apps", "CREATE", w.kind, "null"), "request.object: Required value", 400},
				{"a review of claims", rvWorkload("u1", "apps", "CREATE", `{"version":"v1","kind":"PersistentVolumeClaim"}`, obj("5Gi")), "request.kind", 400},
				{"an object of another kind", rvWorkload("u1", "apps", "CREATE", w.kind, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"w"}}`), "request.object.kind", 400},
				{"an object in another namespace", rvWorkload("u1", "apps", "CREATE", w.kind, fmt.Sprintf(w.object, `,"namespace":"team-a"`, "5Gi")), "does not match the request's namespace", 400},
				{"a v1beta1 review", strings.Replace(valid, "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), "admission.k8s.io/v1beta1 AdmissionReview", 400},
				{"a size that is no quantity", rvWorkload("u1", "apps", "CREATE", w.kind, obj("lots")), "quantities must match", 400},
				{"a clone too small", rvWorkload("u1", "apps", "CREATE", w.kind, obj("1Gi")), "must be at least 5Gi", 403},
			} {
				t.Run(c.name, func(t *testing.T) {
					resp := rvAnswer(t, rvPost(t, h, []byte(c.body), "application/json"))
					if resp.Allowed || resp.Result == nil || resp.Result.Code != c.code || !strings.Contains(resp.Result.Message, c.message) {
						t.Errorf("answer %+v, want code %d and a message with %q", resp, c.code, c.message)
					}
				})
			}
			if resp := rvAnswer(t, rvPost(t, h, []byte(valid), "application/json")); !resp.Allowed || resp.UID != "u1" {
				t.Errorf("a valid review was answered %+v", resp)
			}
			if resp := rvAnswer(t, rvPost(t, h, []byte(valid), "text/plain")); resp.Allowed {
				t.Errorf("a review of content type text/plain was allowed")
			}
		})
	}
}

// A hostile caller controls every string of a review; none becomes a label.
func TestMetricLabelsFromFixedSets(t *testing.T) {
	reg := prometheus.NewRegistry()
	hooks := NewHandlers(Config{Policy: &rules.Policy{}, Facts: rvSource{}, Metrics: NewMetrics(reg)})
	hostile := strings.Repeat("X", 1<<16)
	bodies := map[string][]string{}
	for _, path := range []string{MutatePath, ValidatePath} {
		bodies[path] = []string{
			strings.Replace(rvReview("u1", "apps", rvClaim("5Gi", rvClone)), `"operation":"CREATE"`, `"operation":"`+hostile+`"`, 1),
			strings.Replace(rvReview("u1", "apps", rvClaim("5Gi", rvClone)), `"operation":"CREATE"`, `"operation":"`+hostile+`1"`, 1),
			rvReview(hostile, hostile, rvClaim("5Gi", rvClone)),
			rvReview("u1", "apps", rvClaim("5Gi", rvClone)),
		}
	}
	bodies[ValidateStatefulSetPath] = []string{rvWorkload("u1", "apps", hostile, rvStatefulSetKind, fmt.Sprintf(rvStatefulSet, "", "5Gi")),
		rvWorkload("u1", "apps", "CREATE", rvStatefulSetKind, fmt.Sprintf(rvStatefulSet, "", "5Gi"))}
	bodies[ValidatePodPath] = []string{rvWorkload("u1", "apps", hostile+"2", rvPodKind, fmt.Sprintf(rvPod, "", "5Gi")),
		rvWorkload("u1", hostile, "CREATE", rvPodKind, fmt.Sprintf(rvPod, "", "5Gi"))}
	handlers := map[string]http.Handler{MutatePath: hooks.Mutate, ValidatePath: hooks.Validate, ValidateStatefulSetPath: hooks.StatefulSet, ValidatePodPath: hooks.Pod}
	for path, bs := range bodies {
		for _, b := range bs {
			rvAnswer(t, rvPost(t, handlers[path], []byte(b), "application/json"))
		}
	}
	allowed := map[string]map[string]bool{
		"webhook":   {"mutate": true, "validate": true, "validate-statefulset": true, "validate-pod": true},
		"operation": {"CREATE": true, "UPDATE": true, "DELETE": true, "CONNECT": true, "invalid": true},
		"verdict":   {"allowed": true, "denied": true, "errored": true},
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, f := range families {
		if f.GetName() != "clonegate_reviews_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				if !allowed[l.GetName()][l.GetValue()] {
					t.Errorf("label %s=%.40q is not from its fixed set", l.GetName(), l.GetValue())
				}
			}
		}
	}
	if series == 0 || series > 4*5*3 {
		t.Errorf("%d series of clonegate_reviews_total", series)
	}
}

// A panic while judging is answered as an error, and the next review is served.
func TestPanicAnswered(t *testing.T) {
	h := NewHandlers(Config{Policy: &rules.Policy{}, Facts: panicFacts{}}).Validate
	resp := rvAnswer(t, rvPost(t, h, []byte(rvReview("u1", "apps", rvClaim("5Gi", rvClone))), "application/json"))
	if resp.Allowed || resp.Result == nil || resp.Result.Code != 500 || resp.UID != "u1" {
		t.Errorf("a panic was answered %+v", resp)
	}
	if resp := rvAnswer(t, rvPost(t, h, []byte(rvReview("u2", "apps", rvClaim("5Gi", ""))), "application/json")); !resp.Allowed {
		t.Errorf("after a panic, a claim without a source was answered %+v", resp)
	}
}

type panicFacts struct{}

func (panicFacts) Facts(context.Context, string, *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
	panic("a bug")
}
