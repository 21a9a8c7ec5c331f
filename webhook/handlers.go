package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	jsonserializer "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/clonegate/clonegate/webhook/rules"
)

// Config is what the two webhooks are built from.
type Config struct {
	Policy  *rules.Policy
	Facts   FactFinder   // source lookup for the validating webhook
	Grants  GrantChecker // ReferenceGrant checks for cross-namespace sources; may be nil
	Metrics *Metrics     // may be nil
}

// Handlers are the HTTP handlers of the two webhooks, exactly as `clonegate
// serve` registers them on MutatePath and ValidatePath; the tests build the
// same ones, so what is fuzzed is what is served.
type Handlers struct {
	Mutate, Validate http.Handler
}

// NewHandlers builds both webhooks: controller-runtime's admission.Webhook
// (body limit, content type, decoding, panic recovery) around clonegate's
// handlers, behind checks that the review is one the apiserver could have
// sent for our registrations.
func NewHandlers(c Config) Handlers {
	mutating := &admission.Webhook{Handler: c.Metrics.Instrument("mutate",
		wellFormed(&SourceDefaulter{Policy: c.Policy, Metrics: c.Metrics, Grants: c.Grants}))}
	validating := admission.WithValidator[*corev1.PersistentVolumeClaim](scheme, &CloneValidator{Policy: c.Policy, Facts: c.Facts, Grants: c.Grants, Metrics: c.Metrics})
	validating.Handler = c.Metrics.Instrument("validate", wellFormed(validating.Handler))
	mutating.LogConstructor, validating.LogConstructor = RequestLog, RequestLog
	return Handlers{Mutate: v1Only(mutating), Validate: v1Only(validating)}
}

var (
	reviewGVK  = admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")
	requestPth = field.NewPath("request")
)

// v1Only refuses AdmissionReviews other than admission.k8s.io/v1. Our
// registrations accept only v1 (admissionReviewVersions: ["v1"]), so anything
// else did not come from the apiserver; controller-runtime would otherwise
// answer v1beta1 too. The body goes on to the webhook untouched; a body past
// the size limit is left for it to refuse.
func v1Only(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestSize+1))
		if err != nil {
			writeError(w, "", fmt.Errorf("reading the request body: %w", err))
			return
		}
		if int64(len(body)) <= maxRequestSize && json.Valid(body) {
			// The same reading of apiVersion/kind controller-runtime's decoder makes.
			gvk, err := jsonserializer.DefaultMetaFactory.Interpret(body)
			if err == nil && *gvk != reviewGVK {
				writeError(w, reviewUID(body), field.NotSupported(field.NewPath("apiVersion"),
					gvk.GroupVersion().String()+" "+gvk.Kind, []string{"admission.k8s.io/v1 AdmissionReview"}))
				return
			}
		}
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
		next.ServeHTTP(w, r)
	})
}

// maxRequestSize is controller-runtime's limit on a review body (7 MiB).
const maxRequestSize = 7 << 20

func reviewUID(body []byte) string {
	var review struct {
		Request *struct {
			UID string `json:"uid"`
		} `json:"request"`
	}
	if json.Unmarshal(body, &review) != nil || review.Request == nil {
		return ""
	}
	return review.Request.UID
}

func writeError(w http.ResponseWriter, uid string, err error) {
	resp := admission.Errored(http.StatusBadRequest, err)
	resp.UID = types.UID(uid)
	review := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	review.SetGroupVersionKind(reviewGVK)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}

// wellFormed refuses a review the apiserver would never send for our
// registrations, before any rule sees it: without a uid (its answer could not
// be matched to it), of another kind, or of an unknown operation. Without it
// an empty request would be an "UPDATE-like" request and allowed.
func wellFormed(next admission.Handler) admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		var errs field.ErrorList
		if req.UID == "" {
			errs = append(errs, field.Required(requestPth.Child("uid"), "every AdmissionReview from the apiserver has one"))
		}
		if req.Kind.Group != "" || req.Kind.Kind != claimKind.Kind || (req.Kind.Version != "" && req.Kind.Version != "v1") {
			errs = append(errs, field.Invalid(requestPth.Child("kind"), req.Kind.String(), "clonegate only reviews v1 PersistentVolumeClaims"))
		}
		switch req.Operation {
		case admissionv1.Create:
			if req.Namespace == "" {
				errs = append(errs, field.Required(requestPth.Child("namespace"), "PersistentVolumeClaims are namespaced"))
			}
			if len(req.Object.Raw) == 0 {
				errs = append(errs, field.Required(requestPth.Child("object"), "a CREATE review carries the new object"))
			}
		case admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
		default:
			errs = append(errs, field.NotSupported(requestPth.Child("operation"), req.Operation,
				[]admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect}))
		}
		if len(errs) > 0 {
			return admission.Errored(http.StatusBadRequest, errs.ToAggregate())
		}
		return next.Handle(ctx, req)
	})
}
