package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
// once (read), one decode of the v1 AdmissionReview with the object typed and
// trimmed to what the rules read (decodeBody), the request checks
// (checkRequest), then the webhook's judge — facts, rules, policy — and the
// answer written once (writeAnswer). controller-runtime's webhook server
// still serves them (TLS, certificate watcher, its request metrics); its
// admission.Webhook is not used, as it decodes a review three times over.
func NewHandlers(c Config) Handlers {
	defaulter := &SourceDefaulter{Policy: c.Policy, Metrics: c.Metrics, Grants: c.Grants}
	validator := &CloneValidator{Policy: c.Policy, Facts: c.Facts, Grants: c.Grants, Metrics: c.Metrics}
	judge := TemplateJudge{Policy: c.Policy, Facts: c.Facts, Grants: c.Grants, Metrics: c.Metrics}
	judge.Name = "validate-statefulset"
	statefulSets := &StatefulSetValidator{judge}
	judge.Name = "validate-pod"
	pods := &PodValidator{judge}
	return Handlers{
		Mutate: &handler[claimObject]{name: "mutate", kind: claimGVK, metrics: c.Metrics,
			judge: func(ctx context.Context, o *claimObject) admission.Response {
				return defaulter.Default(ctx, o.object())
			}},
		Validate: &handler[claimObject]{name: "validate", kind: claimGVK, metrics: c.Metrics,
			judge: validated(func(ctx context.Context, o *claimObject) (admission.Warnings, error) {
				return validator.ValidateCreate(ctx, o.object())
			})},
		StatefulSet: &handler[statefulSetObject]{name: statefulSets.Name, kind: statefulSetGVK, metrics: c.Metrics,
			judge: validated(func(ctx context.Context, o *statefulSetObject) (admission.Warnings, error) {
				return statefulSets.ValidateCreate(ctx, o.object())
			})},
		Pod: &handler[podObject]{name: pods.Name, kind: podGVK, metrics: c.Metrics,
			judge: validated(func(ctx context.Context, o *podObject) (admission.Warnings, error) {
				return pods.ValidateCreate(ctx, o.object())
			})},
	}
}

var (
	claimGVK       = metav1.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"}
	statefulSetGVK = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}
	podGVK         = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	requestPth     = field.NewPath("request")
)

// handler is one webhook: the objects of kind it reviews (T, trimmed to what
// its rules read), and judge, which decides a CREATE. Every other operation
// is allowed: data sources and volumes are immutable, so only a CREATE
// brings one to judge.
type handler[T any] struct {
	name    string // the metrics' webhook label
	kind    metav1.GroupVersionKind
	metrics *Metrics
	judge   func(ctx context.Context, obj *T) admission.Response
	states  sync.Pool // *reviewState[T], reused from review to review
}

// review is what the judges and the logs know of the request under review.
type review struct {
	UID       types.UID
	Kind      metav1.GroupVersionKind
	Name      string
	Namespace string
	Operation admissionv1.Operation
	// user is request.userInfo as sent, decoded by User when asked for (a
	// grant to check, a finding or denial to log): most reviews never need
	// it, and a service account's userInfo alone is a dozen strings.
	user     []byte
	userInfo *authenticationv1.UserInfo
	userErr  error
}

// User is the requester, request.userInfo.
func (r *review) User() (authenticationv1.UserInfo, error) {
	if r.userInfo == nil && r.userErr == nil {
		r.userInfo = &authenticationv1.UserInfo{}
		if len(r.user) > 0 {
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts(r.user, r.userInfo); err != nil {
				r.userErr = fmt.Errorf("request.userInfo: %w", err)
			}
		}
	}
	return *r.userInfo, r.userErr
}

// username is the requester's name for the logs.
func (r *review) username() string {
	u, err := r.User()
	if err != nil {
		return "<unreadable>"
	}
	return u.Username
}

type reviewKey struct{}

// reviewOf returns the review ctx was given to judge, or nil.
func reviewOf(ctx context.Context) *review {
	rv, _ := ctx.Value(reviewKey{}).(*review)
	return rv
}

// reviewContext is the context a review is judged with: the request's, the
// review, so that findings are logged with it and grants are checked for
// its user, and the deadline of its apiserver calls (withinReview).
type reviewContext struct {
	context.Context
	review   *review
	deadline time.Time
}

func (c *reviewContext) Value(key any) any {
	switch key {
	case reviewKey{}:
		return c.review
	case deadlineKey{}:
		return &c.deadline
	}
	return c.Context.Value(key)
}

// reviewBody is the part of an admission.k8s.io/v1 AdmissionReview clonegate
// reads, with the object decoded as the type the webhook reviews. The rest
// (oldObject, options, resource, …) is skipped by the decoder, not copied.
type reviewBody[T any] struct {
	APIVersion word `json:"apiVersion"`
	Kind       word `json:"kind"`
	Request    struct {
		UID  types.UID `json:"uid"`
		Kind struct {
			Group   word `json:"group"`
			Version word `json:"version"`
			Kind    word `json:"kind"`
		} `json:"kind"`
		Name      string          `json:"name"`
		Namespace string          `json:"namespace"`
		Operation word            `json:"operation"`
		UserInfo  json.RawMessage `json:"userInfo"`
		Object    *T              `json:"object"`
	} `json:"request"`
}

// reviewState is what a review is read and decoded with, kept for the next
// review once answered: the body's buffer, the decoder with its buffer and
// scanner, the decoded review (nothing the judges keep points into it).
type reviewState[T any] struct {
	body    bytes.Buffer
	limit   io.LimitedReader
	in      bytes.Reader
	dec     sigsjson.Decoder
	ahead   int // bytes the decoder read past the last review: whitespace, skipped first
	decoded reviewBody[T]
	obj     T // what decoded.Request.Object points to, reused
	req     review
	ctx     reviewContext
	answer  []byte
	reuse   bool // false once anything went wrong: a fresh state for the next review
}

// maxReusedBody is the largest body whose buffers are kept for the next review.
const maxReusedBody = 256 << 10

func (h *handler[T]) state() *reviewState[T] {
	if s, ok := h.states.Get().(*reviewState[T]); ok {
		return s
	}
	s := &reviewState[T]{}
	s.dec = sigsjson.NewDecoderCaseSensitivePreserveInts(&s.in)
	s.decoded.Request.Object = &s.obj
	return s
}

func (h *handler[T]) release(s *reviewState[T]) {
	if !s.reuse || s.body.Cap() > maxReusedBody {
		return
	}
	user := s.decoded.Request.UserInfo[:0] // its bytes, reused
	s.decoded = reviewBody[T]{}
	s.decoded.Request.UserInfo = user
	// The decoder fills the object in place: cleared, it is the next one's.
	var zero T
	s.obj = zero
	s.decoded.Request.Object = &s.obj
	s.req, s.ctx = review{}, reviewContext{}
	h.states.Put(s)
}

// ServeHTTP answers one review: review decides, then the answer is counted
// with labels from fixed sets only and written.
func (h *handler[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s := h.state()
	resp := h.review(r, s)
	h.metrics.count(r.Context(), h.name, &s.req, resp, time.Since(start))
	s.answer = writeAnswer(w, s.answer[:0], s.req.UID, resp)
	h.release(s)
}

// review is the path of one review: body → decode → request checks → judge.
// A panic anywhere on it is an error answer, not a dropped connection.
func (h *handler[T]) review(r *http.Request, s *reviewState[T]) (resp admission.Response) {
	s.reuse = false
	defer func() {
		if p := recover(); p != nil {
			s.reuse = false
			log.FromContext(r.Context()).Error(fmt.Errorf("%v", p), "panic while reviewing", "webhook", h.name, "requestID", s.req.UID)
			resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("clonegate failed to review the request (panic: %v)", p))
		}
	}()
	if code, err := s.read(r); err != nil {
		return admission.Errored(code, err)
	}
	obj, err := s.decodeBody()
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	s.reuse = true
	if err := checkRequest(&s.req, h.kind, obj); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if s.req.Operation != admissionv1.Create {
		return allowed(nil)
	}
	s.ctx = reviewContext{Context: r.Context(), review: &s.req, deadline: time.Now().Add(ReviewDeadline)}
	return h.judge(&s.ctx, obj)
}

// maxRequestSize is the limit on a review body (7 MiB, as controller-runtime's).
const maxRequestSize = 7 << 20

// read reads the body once, refusing what no apiserver sends: no body,
// another content type, more than maxRequestSize.
func (s *reviewState[T]) read(r *http.Request) (int32, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return http.StatusBadRequest, errors.New("request body is empty")
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct)
	}
	s.body.Reset()
	if r.ContentLength > 0 && r.ContentLength <= maxRequestSize {
		s.body.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	s.limit = io.LimitedReader{R: r.Body, N: maxRequestSize + 1}
	_, err := s.body.ReadFrom(&s.limit)
	s.limit.R = nil
	switch {
	case err != nil:
		return http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err)
	case s.body.Len() > maxRequestSize:
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request entity is too large; limit is %d bytes", maxRequestSize)
	case s.body.Len() == 0:
		return http.StatusBadRequest, errors.New("request body is empty")
	}
	return 0, nil
}

// decodeBody decodes the body, once, into s.req and the typed object, as the
// apiserver's own clients decode JSON (sigs.k8s.io/json: field names match
// case-sensitively; a value of the wrong JSON type is an error). Only an
// admission.k8s.io/v1 AdmissionReview is accepted: our registrations ask for
// v1 alone, so anything else did not come from the apiserver.
func (s *reviewState[T]) decodeBody() (*T, error) {
	err := s.decodeOne()
	d := &s.decoded
	rr := &d.Request
	s.req = review{UID: rr.UID, Kind: metav1.GroupVersionKind{Group: string(rr.Kind.Group), Version: string(rr.Kind.Version), Kind: string(rr.Kind.Kind)},
		Name: rr.Name, Namespace: rr.Namespace, Operation: admissionv1.Operation(rr.Operation), user: rr.UserInfo}
	if err != nil {
		return nil, fmt.Errorf("the body is not an AdmissionReview: %w", err)
	}
	if d.APIVersion != "admission.k8s.io/v1" || d.Kind != "AdmissionReview" {
		return nil, field.NotSupported(field.NewPath("apiVersion"), string(d.APIVersion+" "+d.Kind), []string{"admission.k8s.io/v1 AdmissionReview"})
	}
	if u := rr.UserInfo; len(u) > 0 && u[0] != '{' && string(u) != "null" {
		return nil, fmt.Errorf("request.userInfo: must be an object, not %.20s", u)
	}
	if rr.Object == &s.obj && !s.objectGiven() {
		return nil, nil // no request.object: refused by checkRequest on a CREATE
	}
	return rr.Object, nil
}

// objectGiven tells whether the body has a request.object. The decoder fills
// s.obj in place and leaves the pointer to it when the key is absent, so an
// object with nothing in its head (never one from the apiserver) is looked
// for again, by a second decode of the body.
func (s *reviewState[T]) objectGiven() bool {
	if h, ok := any(&s.obj).(interface{ head() *objectHead }); ok && *h.head() != (objectHead{}) {
		return true
	}
	var probe struct {
		Request struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	return sigsjson.UnmarshalCaseSensitivePreserveInts(s.body.Bytes(), &probe) == nil && len(probe.Request.Object) > 0
}

// decodeOne decodes the body into s.decoded with s.dec, which, as a stream
// decoder, reads ahead of the value it decodes: what it read past the last
// body's value (whitespace, or the body is refused and s not reused) is
// skipped before this one's.
func (s *reviewState[T]) decodeOne() error {
	body := s.body.Bytes()
	s.in.Reset(body)
	before := s.dec.InputOffset()
	if err := s.dec.Decode(&s.decoded); err != nil {
		return err
	}
	end := int(s.dec.InputOffset()-before) - s.ahead // where the value ends in body
	s.ahead = len(body) - s.in.Len() - end
	if end < 0 || end > len(body) || s.ahead < 0 {
		return errors.New("the decoder lost its place in the body") // never: refused, and s not reused
	}
	if len(bytes.TrimLeft(body[end:], " \t\r\n")) > 0 {
		return errors.New("invalid character after the AdmissionReview")
	}
	return nil
}

// checkRequest refuses a review the apiserver would never send for our
// registrations, before any rule sees it: without a uid (its answer could not
// be matched to it), of another kind, of an unknown operation, a CREATE
// without a namespace or an object, an object of another kind or in another
// namespace than the request's. The object's namespace is set to the
// request's: the apiserver's word on where it is created, and the one the
// cross-namespace rule compares with.
func checkRequest[T any](req *review, kind metav1.GroupVersionKind, obj *T) error {
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
	o, ok := any(obj).(interface{ head() *objectHead })
	if !ok {
		return nil // every reviewed type is one: a programming error
	}
	h := o.head()
	if gv, k := string(h.APIVersion), string(h.Kind); (k != "" && k != kind.Kind) || (gv != "" && !isAPIVersion(gv, kind)) {
		return field.Invalid(requestPth.Child("object", "kind"), gv+" "+k, "this webhook only reviews "+kindName(kind))
	}
	if ns := h.Metadata.Namespace; req.Namespace != "" && ns != "" && ns != req.Namespace {
		return field.Invalid(requestPth.Child("object", "metadata", "namespace"), ns,
			fmt.Sprintf("does not match the request's namespace %q", req.Namespace))
	}
	if req.Namespace != "" {
		h.Metadata.Namespace = req.Namespace
	}
	return nil
}

// isAPIVersion says whether gv is the apiVersion of k.
func isAPIVersion(gv string, k metav1.GroupVersionKind) bool {
	if k.Group == "" {
		return gv == k.Version
	}
	return len(gv) == len(k.Group)+1+len(k.Version) && gv[len(k.Group)] == '/' &&
		strings.HasPrefix(gv, k.Group) && strings.HasSuffix(gv, k.Version)
}

func kindName(k metav1.GroupVersionKind) string {
	if k.Group == "" {
		return k.Version + " " + k.Kind + "s"
	}
	return k.Group + "/" + k.Version + " " + k.Kind + "s"
}

// allowed is the answer allowing a review, with warnings: no status, as
// the apiserver needs none.
func allowed(warnings []string) admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}}
}

// validated turns a validator's verdict into an answer, as
// controller-runtime's validating webhook does: an API status (a denial, a
// bad request) as it is, any other error as a denial.
func validated[T any](validate func(context.Context, *T) (admission.Warnings, error)) func(context.Context, *T) admission.Response {
	return func(ctx context.Context, obj *T) admission.Response {
		warnings, err := validate(ctx, obj)
		if err == nil {
			return allowed(warnings)
		}
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			s := status.Status()
			return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &s}}.WithWarnings(warnings...)
		}
		return admission.Denied(err.Error()).WithWarnings(warnings...)
	}
}

// jsonContentType is the Content-Type of every answer (never modified).
var jsonContentType = []string{"application/json"}

// writeAnswer writes resp as the AdmissionReview answering the review uid,
// encoding it once, and returns buf, the bytes it may have used. An answer
// allowing the review, with a patch or warnings or neither — what clonegate
// answers most — is written with appendAllowed; any other with an encoder.
func writeAnswer(w http.ResponseWriter, buf []byte, uid types.UID, resp admission.Response) []byte {
	w.Header()["Content-Type"] = jsonContentType
	resp.UID = uid
	if len(resp.Patches) > 0 {
		patch, err := json.Marshal(resp.Patches)
		if err != nil {
			resp = admission.Errored(http.StatusInternalServerError, err)
			resp.UID = uid
		} else {
			resp.Patch, resp.PatchType, resp.Patches = patch, &jsonPatchType, nil
		}
	}
	if b, ok := appendAllowed(buf, &resp.AdmissionResponse); ok {
		_, _ = w.Write(b)
		return b
	}
	answer := resp.AdmissionResponse // a copy: resp itself stays off the heap
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: &answer,
	}
	if err := json.NewEncoder(w).Encode(review); err != nil {
		log.Log.Error(err, "writing the answer to a review", "requestID", uid)
	}
	return buf
}

var jsonPatchType = admissionv1.PatchTypeJSONPatch

// appendAllowed appends r to b as encoding/json encodes it in an
// AdmissionReview, byte for byte, when r allows with at most a JSON patch and
// warnings, and every string in it is one strconv.AppendQuote writes as JSON
// does; false otherwise.
func appendAllowed(b []byte, r *admissionv1.AdmissionResponse) ([]byte, bool) {
	if !r.Allowed || r.Result != nil || r.AuditAnnotations != nil || (r.PatchType != nil && *r.PatchType != jsonPatchType) ||
		(r.PatchType == nil) != (len(r.Patch) == 0) || !jsonSafe(string(r.UID)) {
		return b, false
	}
	for _, w := range r.Warnings {
		if !jsonSafe(w) {
			return b, false
		}
	}
	b = append(b, `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":`...)
	b = strconv.AppendQuote(b, string(r.UID))
	b = append(b, `,"allowed":true`...)
	if len(r.Patch) > 0 {
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Patch)
		b = append(b, `","patchType":"JSONPatch"`...)
	}
	if len(r.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range r.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}}\n"...), true
}

// jsonSafe says whether strconv.AppendQuote writes s as encoding/json would:
// printable ASCII without the characters encoding/json escapes for HTML.
func jsonSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
