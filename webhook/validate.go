package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/clonegate/clonegate/webhook/rules"
)

// FactFinder gathers what the rules need to know about a claim's source.
type FactFinder interface {
	Facts(ctx context.Context, namespace string, spec *corev1.PersistentVolumeClaimSpec) (rules.Facts, error)
}

// FreshFactFinder is a FactFinder that answers from caches and can also read
// every fact from the apiserver: a denial is made only on what the apiserver
// says now, never on a cache a moment behind it (a watch gap, a content
// annotated or a source recreated just before the claim).
type FreshFactFinder interface {
	FactFinder
	FreshFacts(ctx context.Context, namespace string, spec *corev1.PersistentVolumeClaimSpec) (rules.Facts, error)
}

// CloneValidator is the validating webhook: it judges a new claim against its
// source. It never blocks UPDATE or DELETE: a claim whose source is gone must
// still be labelled, resized and released from its finalizers.
type CloneValidator struct {
	Policy  *rules.Policy
	Facts   FactFinder
	Grants  GrantChecker // cross-namespace sources; may be nil
	Metrics *Metrics
}

var _ admission.Validator[*corev1.PersistentVolumeClaim] = &CloneValidator{}

// ValidateCreate judges a new claim.
func (v *CloneValidator) ValidateCreate(ctx context.Context, claim *corev1.PersistentVolumeClaim) (admission.Warnings, error) {
	if errs := sizeErrors(claim); len(errs) > 0 {
		return nil, denial(claim, errs)
	}
	if v.Policy.Exempt(claim.Namespace) {
		return nil, nil
	}
	src, ok := rules.SourceOf(claim.Namespace, &claim.Spec)
	if !ok {
		return nil, nil
	}
	// A source in another namespace is read only when granted to the
	// requester; otherwise the cross-namespace finding is the whole answer.
	// (The mutating webhook denied it already; a review sent here directly
	// must not learn more.)
	var crossNamespace []rules.Finding
	if src.Namespace != claim.Namespace { // only then is there a finding to copy
		for _, f := range rules.MutateSource(claim.Namespace, rules.SourcesCopy(&claim.Spec), v.Policy.Groups()).Findings {
			if f.Rule == rules.RuleCrossNamespace {
				crossNamespace = append(crossNamespace, f)
			}
		}
	}
	crossNamespace, judge, err := rules.GuardNamespace(claim.Namespace, &claim.Spec, crossNamespace, grantOf(ctx, v.Policy, v.Grants, claim.Namespace))
	if err != nil {
		return nil, fmt.Errorf("clonegate could not check the grant of the data source, try again: %w", err)
	}
	if !judge {
		verdict := v.Policy.Judge(claim.Namespace, crossNamespace)
		v.Metrics.observe(ctx, "validate", verdict)
		if len(verdict.Denials) > 0 {
			return verdict.Warnings, denial(claim, verdict.Denials)
		}
		return verdict.Warnings, nil
	}
	facts, err := v.Facts.Facts(ctx, claim.Namespace, &claim.Spec)
	if err != nil {
		// Fail closed: a claim we could not judge is not let through.
		return nil, fmt.Errorf("clonegate could not look up the data source, try again: %w", err)
	}
	verdict := v.Policy.Judge(claim.Namespace, rules.ValidateSource(claim.Namespace, &claim.Spec, facts))
	if fresh, ok := v.Facts.(FreshFactFinder); ok && len(verdict.Denials) > 0 {
		if facts, err = fresh.FreshFacts(ctx, claim.Namespace, &claim.Spec); err != nil {
			return nil, fmt.Errorf("clonegate could not look up the data source, try again: %w", err)
		}
		verdict = v.Policy.Judge(claim.Namespace, rules.ValidateSource(claim.Namespace, &claim.Spec, facts))
	}
	v.Metrics.observe(ctx, "validate", verdict)
	if len(verdict.Denials) > 0 {
		return verdict.Warnings, denial(claim, verdict.Denials)
	}
	return verdict.Warnings, nil
}

// ValidateUpdate allows every update: a source is fixed at creation.
func (v *CloneValidator) ValidateUpdate(context.Context, *corev1.PersistentVolumeClaim, *corev1.PersistentVolumeClaim) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete allows every delete.
func (v *CloneValidator) ValidateDelete(context.Context, *corev1.PersistentVolumeClaim) (admission.Warnings, error) {
	return nil, nil
}
