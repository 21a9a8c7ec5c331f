package rules

import (
	corev1 "k8s.io/api/core/v1"
)

// Grant says whether a claim in namespace may be filled from src, a source
// in another namespace: "" when a ReferenceGrant and the requester's own
// access allow it, or why not. A nil Grant allows nothing.
type Grant func(src Source) (why string, err error)

// GuardNamespace keeps clonegate from being an oracle into other namespaces.
// findings are those of MutateSource for spec. When spec's source is in
// namespace, or grant allows the one in another, judge is true and the
// cross-namespace finding is dropped: the source may be read and judged.
// Otherwise judge is false and the findings are all the answer: the source
// must be neither read nor described, so its size, driver, mode, or even
// whether it exists never reach a requester who may not read it.
func GuardNamespace(namespace string, spec *corev1.PersistentVolumeClaimSpec, findings []Finding, grant Grant) (out []Finding, judge bool, err error) {
	src, ok := SourceOf(namespace, spec)
	if !ok || src.Namespace == namespace {
		return findings, true, nil
	}
	if grant == nil {
		return findings, false, nil
	}
	why, err := grant(src)
	if err != nil {
		return nil, false, err
	}
	out = findings[:0:0]
	for _, f := range findings {
		if f.Rule == RuleCrossNamespace {
			if why == "" {
				continue
			}
			e := *f.Err
			e.Detail = why + "; grant it with a ReferenceGrant in the source's namespace, or copy the source into the claim's"
			f.Err = &e
		}
		out = append(out, f)
	}
	return out, why == "", nil
}
