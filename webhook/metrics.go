package webhook

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/clonegate/clonegate/webhook/rules"
)

// Metrics counts reviews and findings. A nil *Metrics counts nothing, so
// tests can leave it out.
type Metrics struct {
	reviews  *prometheus.CounterVec
	findings *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers clonegate's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clonegate_reviews_total",
			Help: "Admission reviews answered, by webhook, operation (CREATE, UPDATE, DELETE, CONNECT, or invalid for a malformed review) and verdict (allowed, denied, errored).",
		}, []string{"webhook", "operation", "verdict"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clonegate_findings_total",
			Help: "Rule findings, by rule and the action the policy took (deny, warn).",
		}, []string{"rule", "action"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "clonegate_review_duration_seconds",
			Help: "Time to answer an admission review, from decoded request to response.",
			// Reviews take tens of microseconds on a cache hit: sub-millisecond buckets.
			Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}, []string{"webhook"}),
	}
	reg.MustRegister(m.reviews, m.findings, m.latency)
	return m
}

// operations are the values of the operation label: the four the apiserver
// sends, and "invalid" for a review refused before its operation was known
// to be one. A label never carries what the caller wrote.
var operations = map[admissionv1.Operation]string{
	admissionv1.Create: "CREATE", admissionv1.Update: "UPDATE", admissionv1.Delete: "DELETE", admissionv1.Connect: "CONNECT",
}

// count counts and times one answered review. Its labels come from fixed
// sets only: webhook is the handler's name, operation one of operations,
// verdict allowed, denied or errored.
func (m *Metrics) count(ctx context.Context, webhook string, req *review, resp admission.Response, took time.Duration) {
	verdict := "allowed"
	switch {
	case resp.Allowed:
	case resp.Result != nil && resp.Result.Code >= 400 && resp.Result.Code != 403 && resp.Result.Code != 422:
		verdict = "errored"
	default:
		verdict = "denied"
	}
	if !resp.Allowed {
		log.FromContext(ctx).Info("review", "webhook", webhook, "verdict", verdict, "user", req.username(),
			"namespace", req.Namespace, "name", req.Name, "requestID", req.UID, "message", resultMessage(resp))
	}
	if m == nil {
		return
	}
	op, ok := operations[req.Operation]
	if !ok || verdict == "errored" && resp.Result.Code == 400 {
		op = "invalid" // refused as malformed: its operation may be anything
	}
	m.latency.WithLabelValues(webhook).Observe(took.Seconds())
	m.reviews.WithLabelValues(webhook, op, verdict).Inc()
}

// observe counts a verdict's findings by rule.
func (m *Metrics) observe(ctx context.Context, webhook string, v rules.Verdict) {
	for _, j := range v.Judged {
		// Findings are rare (most reviews have none): each is logged, as an
		// audit trail beside the counter.
		req := reviewOf(ctx)
		if req == nil {
			req = &review{}
		}
		log.FromContext(ctx).Info("finding", "webhook", webhook, "rule", j.Rule, "action", j.Action,
			"requestID", req.UID, "user", req.username(), "namespace", req.Namespace, "name", req.Name,
			"field", j.Err.Field)
		if m != nil {
			m.findings.WithLabelValues(string(j.Rule), string(j.Action)).Inc()
		}
	}
}

func resultMessage(resp admission.Response) string {
	if resp.Result == nil {
		return ""
	}
	return resp.Result.Message
}
