package rules

// ReferenceGrant is the part of a Gateway API ReferenceGrant the rules read.
type ReferenceGrant struct {
	From []GrantFrom
	To   []GrantTo
}

// GrantFrom is who a ReferenceGrant lets in.
type GrantFrom struct{ Group, Kind, Namespace string }

// GrantTo is what a ReferenceGrant lets them use; an empty Name is any name.
type GrantTo struct{ Group, Kind, Name string }

// Granted reports whether one of grants (all in the source's namespace) lets
// a claim in namespace use src. It matches the way external-provisioner's
// IsGranted does, so a claim admitted here is one the provisioner will fill.
func Granted(grants []ReferenceGrant, namespace string, src Source) bool {
	for _, g := range grants {
		from := false
		for _, f := range g.From {
			if f.Group == coreAPIGroup && f.Kind == KindClaim && f.Namespace == namespace {
				from = true
				break
			}
		}
		if !from {
			continue
		}
		for _, to := range g.To {
			if to.Group == src.APIGroup && to.Kind == src.Kind && (to.Name == "" || to.Name == src.Name) {
				return true
			}
		}
	}
	return false
}
