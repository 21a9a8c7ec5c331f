package webhook

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/clonegate/clonegate/webhook/rules"
)

var (
	statefulSetResource = schema.GroupResource{Group: "apps", Resource: "statefulsets"}
	podResource         = schema.GroupResource{Resource: "pods"}
	podSpecPath         = field.NewPath("spec")
)

// TemplateJudge judges the claim templates of a workload at its CREATE, so
// that the person applying it hears what the claims' own webhooks would
// later tell only a controller, in an event nobody reads.
type TemplateJudge struct {
	Policy  *rules.Policy
	Facts   FactFinder
	Grants  GrantChecker // cross-namespace sources, checked as the workload's creator; may be nil
	Metrics *Metrics
	Name    string // the metrics' webhook label
}

// judge returns the warnings, and the denial when any finding denies. One
// review's cost is bounded: MaxTemplatesPerReview templates, each source
// looked up once, MaxLiveReadsPerReview reads, ReviewDeadline; what is left
// over is named in a warning and judged when its claims are created.
func (j *TemplateJudge) judge(ctx context.Context, resource schema.GroupResource, meta *metav1.ObjectMeta, templates []rules.Template) (admission.Warnings, error) {
	if meta.Namespace == "" {
		if req := reviewOf(ctx); req != nil {
			meta.Namespace = req.Namespace
		}
	}
	ns := meta.Namespace
	if j.Policy.Exempt(ns) {
		return nil, nil
	}
	ctx = WithReadBudget(ctx, MaxLiveReadsPerReview)

	var notJudged []string
	if len(templates) > MaxTemplatesPerReview {
		notJudged = append(notJudged, fmt.Sprintf("%s and the %d claim templates after it were not judged: clonegate judges the first %d of a workload; their claims are judged when they are created",
			templates[MaxTemplatesPerReview].Path, len(templates)-MaxTemplatesPerReview-1, MaxTemplatesPerReview))
		templates = templates[:MaxTemplatesPerReview]
	}
	grant := grantOf(ctx, j.Policy, j.Grants, ns)
	findings, cut, err := j.judgeTemplates(ctx, ns, templates, grant, j.Facts.Facts)
	if err != nil {
		return nil, err
	}
	verdict := j.Policy.Judge(ns, findings)
	// A denial is confirmed on facts read from the apiserver, as for a claim;
	// if the review's budget cannot pay for that, the cached verdict stands.
	if fresh, ok := j.Facts.(FreshFactFinder); ok && len(verdict.Denials) > 0 {
		if f, freshCut, err := j.judgeTemplates(ctx, ns, templates, grant, fresh.FreshFacts); err == nil && freshCut == "" {
			verdict = j.Policy.Judge(ns, f)
		}
	}
	if cut != "" {
		notJudged = append(notJudged, cut)
	}
	j.Metrics.observe(ctx, j.Name, verdict)
	// First: the apiserver keeps only the first 4 KiB of a response's warnings.
	warnings := append(admission.Warnings(notJudged), verdict.Warnings...)
	if len(verdict.Denials) > 0 {
		return warnings, forbidden(resource, meta.Name, verdict.Denials)
	}
	return warnings, nil
}

// judgeTemplates runs the claim rules over each template, looking facts up
// once per source and class. cut says which templates were not judged when
// the review ran out of lookups or time.
func (j *TemplateJudge) judgeTemplates(ctx context.Context, ns string, templates []rules.Template, grant rules.Grant,
	factsOf func(context.Context, string, *corev1.PersistentVolumeClaimSpec) (rules.Facts, error)) (findings []rules.Finding, cut string, err error) {
	var knownBuf [2]templateFacts
	known := knownBuf[:0] // templates are few: a slice will do
	for i, t := range templates {
		f, err := rules.ValidateTemplate(ns, t, j.Policy.Groups(), grant, func(spec *corev1.PersistentVolumeClaimSpec) (rules.Facts, error) {
			key := factsKeyOf(ns, spec)
			for _, k := range known {
				if k.key == key {
					return k.facts, nil
				}
			}
			fs, err := factsOf(ctx, ns, spec)
			if err == nil {
				known = append(known, templateFacts{key, fs})
			}
			return fs, err
		})
		if err != nil && (errors.Is(err, ErrReadBudget) || ctx.Err() != nil || pastDeadline(ctx)) {
			why := "the review reached its limit of " + fmt.Sprint(MaxLiveReadsPerReview) + " lookups"
			if !errors.Is(err, ErrReadBudget) {
				why = "the review ran out of time"
			}
			return findings, fmt.Sprintf("%s and the %d claim templates after it were not judged: %s; their claims are judged when they are created",
				t.Path, len(templates)-i-1, why), nil
		}
		if err != nil {
			// Fail closed, as for a claim: the server answers, so this is a lookup error.
			return nil, "", fmt.Errorf("clonegate could not look up the data source of %s, try again: %w", t.Path, err)
		}
		findings = append(findings, f...)
	}
	return findings, "", nil
}

// factsKey names what a template's facts depend on: its source and class.
type factsKey struct {
	source       rules.Source // without its Path
	class        string
	defaultClass bool // no storageClassName: the cluster's default
}

func factsKeyOf(namespace string, spec *corev1.PersistentVolumeClaimSpec) factsKey {
	src, _ := rules.SourceOf(namespace, spec)
	src.Path = nil
	if spec.StorageClassName == nil {
		return factsKey{source: src, defaultClass: true}
	}
	return factsKey{source: src, class: *spec.StorageClassName}
}

type templateFacts struct {
	key   factsKey
	facts rules.Facts
}

// StatefulSetValidator judges a new StatefulSet's volumeClaimTemplates (and
// the generic ephemeral volumes of its pod template).
type StatefulSetValidator struct{ TemplateJudge }

var _ admission.Validator[*appsv1.StatefulSet] = &StatefulSetValidator{}

// ValidateCreate judges the claim templates of a new StatefulSet.
func (v *StatefulSetValidator) ValidateCreate(ctx context.Context, sts *appsv1.StatefulSet) (admission.Warnings, error) {
	return v.judge(ctx, statefulSetResource, &sts.ObjectMeta, rules.StatefulSetTemplates(sts))
}

// ValidateUpdate allows every update: the claims of existing ordinals were
// judged when the StatefulSet was created, and new ones are judged by the
// claim webhooks.
func (v *StatefulSetValidator) ValidateUpdate(context.Context, *appsv1.StatefulSet, *appsv1.StatefulSet) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete allows every delete.
func (v *StatefulSetValidator) ValidateDelete(context.Context, *appsv1.StatefulSet) (admission.Warnings, error) {
	return nil, nil
}

// PodValidator judges a new Pod's generic ephemeral volumes.
type PodValidator struct{ TemplateJudge }

var _ admission.Validator[*corev1.Pod] = &PodValidator{}

// ValidateCreate judges the ephemeral volume templates of a new Pod.
func (v *PodValidator) ValidateCreate(ctx context.Context, pod *corev1.Pod) (admission.Warnings, error) {
	return v.judge(ctx, podResource, &pod.ObjectMeta, rules.PodTemplates(podSpecPath, &pod.Spec))
}

// ValidateUpdate allows every update: pod volumes are immutable.
func (v *PodValidator) ValidateUpdate(context.Context, *corev1.Pod, *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete allows every delete.
func (v *PodValidator) ValidateDelete(context.Context, *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

// forbidden is the error of a denial: Forbidden, as in-tree admission
// plugins answer, with every field error in the message and as a cause.
// (kubectl prints an Invalid status as its causes only, hiding which webhook
// denied.)
func forbidden(resource schema.GroupResource, name string, errs field.ErrorList) *apierrors.StatusError {
	err := apierrors.NewForbidden(resource, name, errs.ToAggregate())
	causes := make([]metav1.StatusCause, 0, len(errs))
	for _, e := range errs {
		causes = append(causes, metav1.StatusCause{Type: metav1.CauseType(e.Type), Message: e.ErrorBody(), Field: e.Field})
	}
	err.ErrStatus.Details.Causes = causes
	return err
}
