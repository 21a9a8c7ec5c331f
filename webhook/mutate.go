// Package webhook serves clonegate's admission webhooks for
// PersistentVolumeClaims. The handlers only decode, look up and respond;
// every decision is made by package rules.
package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"gomodules.xyz/jsonpatch/v2"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/clonegate/clonegate/webhook/rules"
)

// Paths the webhooks are served on (kubebuilder's naming).
const (
	MutatePath   = "/mutate--v1-persistentvolumeclaim"
	ValidatePath = "/validate--v1-persistentvolumeclaim"
	// ValidateStatefulSetPath and ValidatePodPath judge workloads' claim templates.
	ValidateStatefulSetPath = "/validate-apps-v1-statefulset"
	ValidatePodPath         = "/validate--v1-pod"
)

var (
	claimKind     = schema.GroupKind{Kind: "PersistentVolumeClaim"}
	claimResource = schema.GroupResource{Resource: "persistentvolumeclaims"}
)

// SourceDefaulter is the mutating webhook. It answers with a patch and
// warnings together, which controller-runtime's Defaulter cannot.
type SourceDefaulter struct {
	Policy  *rules.Policy
	Metrics *Metrics
	// Grants is asked about cross-namespace sources when the policy allows
	// them with a ReferenceGrant; nil otherwise.
	Grants GrantChecker
}

// Default defaults the data source apiGroups of a new claim and denies
// cross-namespace sources: rules, then policy, then the answer, a patch of
// only the fields it changed.
func (d *SourceDefaulter) Default(ctx context.Context, claim *corev1.PersistentVolumeClaim) admission.Response {
	if errs := sizeErrors(claim); len(errs) > 0 {
		return deny(claim, errs)
	}
	before := sourceGroups(&claim.Spec)
	mutation := rules.MutateSource(claim.Namespace, &claim.Spec, d.Policy.Groups())
	// A granted cross-namespace source loses its finding; otherwise it says why not.
	findings, _, err := rules.GuardNamespace(claim.Namespace, &claim.Spec, mutation.Findings, grantOf(ctx, d.Policy, d.Grants, claim.Namespace))
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	mutation.Findings = findings
	verdict := d.Policy.Judge(claim.Namespace, mutation.Findings)
	d.Metrics.observe(ctx, "mutate", verdict)
	warnings := append(mutation.Warnings, verdict.Warnings...)
	if len(verdict.Denials) > 0 {
		return deny(claim, verdict.Denials).WithWarnings(warnings...)
	}
	resp := allowed(warnings)
	if mutation.Changed {
		resp.Patch, resp.PatchType = groupPatch(before, sourceGroups(&claim.Spec)), &jsonPatchType
	}
	return resp
}

// sourceFields are the data source fields the mutating webhook may change:
// the apiGroup of dataSource and of dataSourceRef, and dataSourceRef.namespace.
func sourceGroups(spec *corev1.PersistentVolumeClaimSpec) [3]*string {
	var g [3]*string
	if spec.DataSource != nil {
		g[0] = spec.DataSource.APIGroup
	}
	if spec.DataSourceRef != nil {
		g[1], g[2] = spec.DataSourceRef.APIGroup, spec.DataSourceRef.Namespace
	}
	return g
}

// groupPatch is the JSON patch of only the fields the mutation changed. A
// patch computed from re-marshalling the whole claim would also touch fields
// the typed round trip adds (status: {}), which the user never asked for.
// It is written byte for byte as json.Marshal writes groupPatches.
func groupPatch(before, after [3]*string) []byte {
	b := make([]byte, 0, 256)
	b = append(b, '[')
	for i := range after {
		if before[i] == after[i] {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		if after[i] == nil {
			b = append(b, `{"op":"remove","path":"`...)
			b = append(b, patchPaths[i]...)
			b = append(b, `"}`...)
			continue
		}
		if !jsonSafe(*after[i]) {
			patch, err := json.Marshal(groupPatches(before, after))
			if err != nil {
				panic(err) // strings only: never
			}
			return patch
		}
		b = append(b, `{"op":"add","path":"`...)
		b = append(b, patchPaths[i]...)
		b = append(b, `","value":`...)
		b = strconv.AppendQuote(b, *after[i])
		b = append(b, '}')
	}
	return append(b, ']')
}

// patchPaths are the JSON pointers of the fields sourceGroups returns.
var patchPaths = [3]string{"/spec/dataSource/apiGroup", "/spec/dataSourceRef/apiGroup", "/spec/dataSourceRef/namespace"}

// groupPatches are the operations of groupPatch.
func groupPatches(before, after [3]*string) []jsonpatch.JsonPatchOperation {
	var ops []jsonpatch.JsonPatchOperation
	for i := range after {
		switch {
		case before[i] == after[i]:
		case after[i] == nil:
			ops = append(ops, jsonpatch.JsonPatchOperation{Operation: "remove", Path: patchPaths[i]})
		default:
			// "add" sets the member whether or not it exists (RFC 6902 4.1).
			ops = append(ops, jsonpatch.JsonPatchOperation{Operation: "add", Path: patchPaths[i], Value: *after[i]})
		}
	}
	return ops
}

// denial is the error of denying a claim (see forbidden).
func denial(claim *corev1.PersistentVolumeClaim, errs field.ErrorList) *apierrors.StatusError {
	return forbidden(claimResource, claim.Name, errs)
}

func deny(claim *corev1.PersistentVolumeClaim, errs field.ErrorList) admission.Response {
	status := denial(claim, errs).Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &status}}
}
