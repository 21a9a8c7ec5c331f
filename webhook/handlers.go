package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/clonegate/clonegate/webhook/rules"
)

// Config is what the webhooks are built from.
type Config struct {
	Policy  *rules.Policy
	Facts   FactFinder   // source lookup for the validating webhooks
	Grants  GrantChecker // ReferenceGrant checks for cross-namespace sources; may be nil
	Metrics *Metrics     // may be nil
}

// Handlers are the HTTP handlers of clonegate's webhooks, exactly as
// `clonegate serve` registers them on MutatePath, ValidatePath,
// ValidateStatefulSetPath and ValidatePodPath; the tests build the same ones,
// so what is fuzzed is what is served.
type Handlers struct {
	Mutate, Validate, StatefulSet, Pod http.Handler
}

// NewHandlers builds the webhooks. Each review takes one path: the body read
// once (readBody), one decode of the v1 AdmissionReview with the object typed
// (decodeReview), the request checks (checkRequest), then the webhook's judge
// — facts, rules, policy — and the answer written once (writeAnswer).
// controller-runtime's webhook server still serves them (TLS, certificate
// watcher, its request metrics); its admission.Webhook is not used, as it
// decodes a review three times over.
func NewHandlers(c Config) Handlers {
	defaulter := &SourceDefaulter{Policy: c.Policy, Metrics: c.Metrics, Grants: c.Grants}
	validator := &CloneValidator{Policy: c.Policy, Facts: c.Facts, Grants: c.Grants, Metrics: c.Metrics}
	judge := TemplateJudge{Policy: c.Policy, Facts: c.Facts, Grants: c.Grants, Metrics: c.Metrics}
	judge.Name = "validate-statefulset"
	statefulSets := &StatefulSetValidator{judge}
	judge.Name = "validate-pod"
	pods := &PodValidator{judge}
	return Handlers{
		Mutate: &handler[corev1.PersistentVolumeClaim]{name: "mutate", kind: claimGVK, metrics: c.Metrics,
			judge: defaulter.Default},
		Validate: &handler[corev1.PersistentVolumeClaim]{name: "validate", kind: claimGVK, metrics: c.Metrics,
			judge: validated(validator.ValidateCreate)},
		StatefulSet: &handler[appsv1.StatefulSet]{name: statefulSets.Name, kind: statefulSetGVK, metrics: c.Metrics,
			judge: validated(statefulSets.ValidateCreate)},
		Pod: &handler[corev1.Pod]{name: pods.Name, kind: podGVK, metrics: c.Metrics,
			judge: validated(pods.ValidateCreate)},
	}
}

var (
	claimGVK       = metav1.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"}
	statefulSetGVK = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}
	podGVK         = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	requestPth     = field.NewPath("request")
)

// handler is one webhook: the objects of kind it reviews, and judge, which
// decides a CREATE. Every other operation is allowed: data sources and
// volumes are immutable, so only a CREATE brings one to judge.
type handler[T any] struct {
	name    string // the metrics' webhook label
	kind    metav1.GroupVersionKind
	metrics *Metrics
	judge   func(ctx context.Context, req *admission.Request, obj *T) admission.Response
}

// reviewBody is the part of an admission.k8s.io/v1 AdmissionReview clonegate
// reads, with the object decoded as the type the webhook reviews. The rest
// (oldObject, options, resource, …) is skipped by the decoder, not copied.
type reviewBody[T any] struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Request    *reviewRequest[T] `json:"request"`
}

type reviewRequest[T any] struct {
	UID       types.UID                 `json:"uid"`
	Kind      metav1.GroupVersionKind   `json:"kind"`
	Name      string                    `json:"name"`
	Namespace string                    `json:"namespace"`
	Operation admissionv1.Operation     `json:"operation"`
	UserInfo  authenticationv1.UserInfo `json:"userInfo"`
	DryRun    *bool                     `json:"dryRun"`
	Object    *T                        `json:"object"`
}

// ServeHTTP answers one review: review decides, then the answer is counted
// with labels from fixed sets only and written.
func (h *handler[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, resp := h.review(r)
	h.metrics.count(r.Context(), h.name, req, resp, time.Since(start))
	writeAnswer(w, req.UID, resp)
}

// review is the path of one review: body → decode → request checks → judge.
// A panic anywhere on it is an error answer, not a dropped connection.
func (h *handler[T]) review(r *http.Request) (req *admission.Request, resp admission.Response) {
	req = &admission.Request{}
	defer func() {
		if p := recover(); p != nil {
			log.FromContext(r.Context()).Error(fmt.Errorf("%v", p), "panic while reviewing", "webhook", h.name, "requestID", req.UID)
			resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("clonegate failed to review the request (panic: %v)", p))
		}
	}()
	body, code, err := readBody(r)
	if err != nil {
		return req, admission.Errored(code, err)
	}
	defer bodies.Put(body)
	obj, err := decodeReview[T](body.Bytes(), req)
	if err != nil {
		return req, admission.Errored(http.StatusBadRequest, err)
	}
	if err := checkRequest(req, h.kind, obj); err != nil {
		return req, admission.Errored(http.StatusBadRequest, err)
	}
	if req.Operation != admissionv1.Create {
		return req, admission.Allowed("")
	}
	// The request rides in the context, so that findings are logged with
	// it and grants are checked for its user.
	return req, h.judge(admission.NewContextWithRequest(r.Context(), *req), req, obj)
}

// maxRequestSize is the limit on a review body (7 MiB, as controller-runtime's).
const maxRequestSize = 7 << 20

// bodies are the buffers review bodies are read into: nothing decoded from a
// body points into it, so one is reused once its review is answered.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads the body once, refusing what no apiserver sends: no body,
// another content type, more than maxRequestSize.
func readBody(r *http.Request) (*bytes.Buffer, int32, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, http.StatusBadRequest, errors.New("request body is empty")
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return nil, http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct)
	}
	buf := bodies.Get().(*bytes.Buffer)
	buf.Reset()
	if r.ContentLength > 0 && r.ContentLength <= maxRequestSize {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(r.Body, maxRequestSize+1))
	switch {
	case err != nil:
		err = fmt.Errorf("reading the request body: %w", err)
	case buf.Len() > maxRequestSize:
		bodies.Put(new(bytes.Buffer)) // not buf: do not keep 7 MiB around
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request entity is too large; limit is %d bytes", maxRequestSize)
	case buf.Len() == 0:
		err = errors.New("request body is empty")
	default:
		return buf, 0, nil
	}
	bodies.Put(buf)
	return nil, http.StatusBadRequest, err
}

// decodeReview decodes body, once, into req and the typed object, as the
// apiserver's own clients decode JSON (sigs.k8s.io/json: field names match
// case-sensitively). Only an admission.k8s.io/v1 AdmissionReview is
// accepted: our registrations ask for v1 alone, so anything else did not
// come from the apiserver.
func decodeReview[T any](body []byte, req *admission.Request) (*T, error) {
	var review reviewBody[T]
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		if review.Request != nil {
			req.UID = review.Request.UID
		}
		return nil, fmt.Errorf("the body is not an AdmissionReview: %w", err)
	}
	if rr := review.Request; rr != nil {
		req.UID, req.Kind, req.Name, req.Namespace = rr.UID, rr.Kind, rr.Name, rr.Namespace
		req.Operation, req.UserInfo, req.DryRun = rr.Operation, rr.UserInfo, rr.DryRun
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		return nil, field.NotSupported(field.NewPath("apiVersion"), review.APIVersion+" "+review.Kind, []string{"admission.k8s.io/v1 AdmissionReview"})
	}
	if review.Request == nil {
		return nil, nil
	}
	return review.Request.Object, nil
}

// checkRequest refuses a review the apiserver would never send for our
// registrations, before any rule sees it: without a uid (its answer could not
// be matched to it), of another kind, of an unknown operation, a CREATE
// without a namespace or an object, an object of another kind or in another
// namespace than the request's. The object's namespace is set to the
// request's: the apiserver's word on where it is created, and the one the
// cross-namespace rule compares with.
func checkRequest[T any](req *admission.Request, kind metav1.GroupVersionKind, obj *T) error {
	var errs field.ErrorList
	if req.UID == "" {
		errs = append(errs, field.Required(requestPth.Child("uid"), "every AdmissionReview from the apiserver has one"))
	}
	if req.Kind.Group != kind.Group || req.Kind.Kind != kind.Kind || (req.Kind.Version != "" && req.Kind.Version != kind.Version) {
		errs = append(errs, field.Invalid(requestPth.Child("kind"), req.Kind.String(), "this webhook only reviews "+kindName(kind)))
	}
	switch req.Operation {
	case admissionv1.Create:
		if req.Namespace == "" {
			errs = append(errs, field.Required(requestPth.Child("namespace"), kind.Kind+"s are namespaced"))
		}
		if obj == nil {
			errs = append(errs, field.Required(requestPth.Child("object"), "a CREATE review carries the new object"))
		}
	case admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
	default:
		errs = append(errs, field.NotSupported(requestPth.Child("operation"), req.Operation,
			[]admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect}))
	}
	if len(errs) > 0 || obj == nil {
		return errs.ToAggregate()
	}
	o, ok := any(obj).(interface {
		metav1.Object
		GetObjectKind() schema.ObjectKind
	})
	if !ok {
		return nil // every reviewed type is one: a programming error
	}
	if gvk := o.GetObjectKind().GroupVersionKind(); (gvk.Kind != "" && gvk.Kind != kind.Kind) ||
		(gvk.Version != "" && (gvk.Group != kind.Group || gvk.Version != kind.Version)) {
		return field.Invalid(requestPth.Child("object", "kind"), gvk.GroupVersion().String()+" "+gvk.Kind, "this webhook only reviews "+kindName(kind))
	}
	if ns := o.GetNamespace(); req.Namespace != "" && ns != "" && ns != req.Namespace {
		return field.Invalid(requestPth.Child("object", "metadata", "namespace"), ns,
			fmt.Sprintf("does not match the request's namespace %q", req.Namespace))
	}
	if req.Namespace != "" {
		o.SetNamespace(req.Namespace)
	}
	return nil
}

func kindName(k metav1.GroupVersionKind) string {
	if k.Group == "" {
		return k.Version + " " + k.Kind + "s"
	}
	return k.Group + "/" + k.Version + " " + k.Kind + "s"
}

// validated turns a validator's verdict into an answer, as
// controller-runtime's validating webhook does: an API status (a denial, a
// bad request) as it is, any other error as a denial.
func validated[T any](validate func(context.Context, *T) (admission.Warnings, error)) func(context.Context, *admission.Request, *T) admission.Response {
	return func(ctx context.Context, _ *admission.Request, obj *T) admission.Response {
		warnings, err := validate(ctx, obj)
		if err == nil {
			return admission.Allowed("").WithWarnings(warnings...)
		}
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			s := status.Status()
			return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &s}}.WithWarnings(warnings...)
		}
		return admission.Denied(err.Error()).WithWarnings(warnings...)
	}
}

// writeAnswer writes resp as the AdmissionReview answering the review uid,
// encoding it once. The answer clonegate gives most — allowed, nothing to
// say — is written as it is, without an encoder.
func writeAnswer(w http.ResponseWriter, uid types.UID, resp admission.Response) {
	w.Header().Set("Content-Type", "application/json")
	if resp.Allowed && len(resp.Patches) == 0 && len(resp.Warnings) == 0 && resp.Result == nil && len(resp.Patch) == 0 && jsonSafe(uid) {
		b := make([]byte, 0, 128+len(uid))
		b = append(b, `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":`...)
		b = strconv.AppendQuote(b, string(uid))
		b = append(b, `,"allowed":true}}`+"\n"...)
		_, _ = w.Write(b)
		return
	}
	resp.UID = uid
	if len(resp.Patches) > 0 {
		patch, err := json.Marshal(resp.Patches)
		if err != nil {
			resp = admission.Errored(http.StatusInternalServerError, err)
			resp.UID = uid
		} else {
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
		}
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: &resp.AdmissionResponse,
	}
	if err := json.NewEncoder(w).Encode(review); err != nil {
		log.Log.Error(err, "writing the answer to a review", "requestID", uid)
	}
}

// jsonSafe says whether strconv.AppendQuote writes s as JSON would: printable
// ASCII without escapes JSON spells differently.
func jsonSafe(s types.UID) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
