package webhook

import (
	"math"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxScale bounds the decimal exponent of a size the rules compare. Real
// sizes go from n (10^-9) to E (10^18); a Quantity like "1e10000000" parses
// without error, and comparing it with another takes seconds of CPU (its
// digits are expanded), which one crafted review could repeat at will.
const maxScale = 30

// sizeErrors refuses storage sizes no volume can have before any rule
// compares them: negative, 8Ei or more (ParseQuantity silently caps
// "9999999999999999999Ei" at the int64 maximum), or too large or precise to
// compare cheaply. The apiserver rejects negative sizes only after mutating
// admission, and validating webhooks may be sent anything: say so clearly
// rather than judge nonsense.
func sizeErrors(claim *corev1.PersistentVolumeClaim) field.ErrorList {
	var errs field.ErrorList
	for _, list := range [...]struct {
		field string
		rl    corev1.ResourceList
	}{{"requests", claim.Spec.Resources.Requests}, {"limits", claim.Spec.Resources.Limits}} {
		if q, ok := list.rl[corev1.ResourceStorage]; ok {
			if msg := sizeProblem(q); msg != "" {
				errs = append(errs, field.Invalid(field.NewPath("spec", "resources", list.field, string(corev1.ResourceStorage)), q.String(), msg))
			}
		}
	}
	return errs
}

func sizeProblem(q resource.Quantity) string {
	if q.Sign() < 0 {
		return "must not be negative"
	}
	if v, ok := q.AsInt64(); ok && v < math.MaxInt64 {
		return "" // a whole number of bytes below 8Ei: the common case, without big numbers
	}
	d := q.AsDec()
	if s := int(d.Scale()); s < -maxScale || s > maxScale || d.UnscaledBig().BitLen() > 128 {
		return "is not a size in bytes any volume can have: less than 8Ei, to a precision of 1n"
	}
	// Parsing caps every larger size at the int64 maximum, so 8Ei itself
	// cannot be told from 9999999999999999999Ei: both are refused.
	if q.CmpInt64(math.MaxInt64) >= 0 {
		return "is larger than any volume can be: must be less than 8Ei"
	}
	return ""
}
