package webhook

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/webhook/rules"
)

var referenceGrantListGVK = schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1beta1", Kind: "ReferenceGrantList"}

// GrantChecker decides whether a cross-namespace source is granted.
type GrantChecker interface {
	// Granted returns "" when user may fill a claim in namespace from src,
	// or why not.
	Granted(ctx context.Context, user authenticationv1.UserInfo, namespace string, src rules.Source) (why string, err error)
}

// GrantLookup grants a cross-namespace source when the user may get the
// source themselves and a ReferenceGrant in the source's namespace allows it:
// the review speaks for the user, the grant for the source's owners.
type GrantLookup struct {
	Live   client.Reader   // ReferenceGrants, read directly: rare and must be fresh
	Client client.Client   // creates SubjectAccessReviews
	Mapper meta.RESTMapper // kind → resource for the review
}

// Granted implements GrantChecker.
func (g *GrantLookup) Granted(ctx context.Context, user authenticationv1.UserInfo, namespace string, src rules.Source) (string, error) {
	// The requester's access first: until it is known, even whether a
	// ReferenceGrant exists in the source's namespace is not theirs to learn.
	mapping, err := g.Mapper.RESTMapping(schema.GroupKind{Group: src.APIGroup, Kind: src.Kind})
	if err != nil {
		return "", fmt.Errorf("finding the resource of %s: %w", src.Kind, err)
	}
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra(user.Extra),
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: src.Namespace, Verb: "get", Group: src.APIGroup, Resource: mapping.Resource.Resource, Name: src.Name,
		},
	}}
	sarCtx, cancel := withinReview(ctx)
	defer cancel()
	if err := g.Client.Create(sarCtx, review); err != nil {
		return "", fmt.Errorf("asking whether %q may get the source: %w", user.Username, err)
	}
	if !review.Status.Allowed {
		return fmt.Sprintf("user %q may not get %s %q in namespace %q", user.Username, src.Kind, src.Name, src.Namespace), nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(referenceGrantListGVK)
	err = g.Live.List(ctx, list, client.InNamespace(src.Namespace))
	if err != nil && !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("listing ReferenceGrants in %q: %w", src.Namespace, err)
	}
	if !rules.Granted(referenceGrants(list), namespace, src) {
		return fmt.Sprintf("no ReferenceGrant in namespace %q grants PersistentVolumeClaims in %q the %s %q", src.Namespace, namespace, src.Kind, src.Name), nil
	}
	return "", nil
}

func referenceGrants(list *unstructured.UnstructuredList) []rules.ReferenceGrant {
	var out []rules.ReferenceGrant
	for _, item := range list.Items {
		var g rules.ReferenceGrant
		from, _, _ := unstructured.NestedSlice(item.Object, "spec", "from")
		for _, f := range from {
			m, _ := f.(map[string]any)
			g.From = append(g.From, rules.GrantFrom{Group: str(m, "group"), Kind: str(m, "kind"), Namespace: str(m, "namespace")})
		}
		to, _, _ := unstructured.NestedSlice(item.Object, "spec", "to")
		for _, t := range to {
			m, _ := t.(map[string]any)
			g.To = append(g.To, rules.GrantTo{Group: str(m, "group"), Kind: str(m, "kind"), Name: str(m, "name")})
		}
		out = append(out, g)
	}
	return out
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func extra(in map[string]authenticationv1.ExtraValue) map[string]authorizationv1.ExtraValue {
	if in == nil {
		return nil
	}
	out := make(map[string]authorizationv1.ExtraValue, len(in))
	for k, v := range in {
		out[k] = authorizationv1.ExtraValue(v)
	}
	return out
}

// grantOf returns the Grant of the review in ctx: its requester's grants, as
// GrantLookup judges them, when the policy allows cross-namespace sources
// with a ReferenceGrant; nil (nothing granted) otherwise. Answers are
// remembered for the review, so many templates naming one source cost one
// check.
func grantOf(ctx context.Context, policy *rules.Policy, grants GrantChecker, namespace string) rules.Grant {
	if !policy.CrossNamespace.AllowWithReferenceGrant || grants == nil {
		return nil
	}
	req := reviewOf(ctx)
	if req == nil {
		return nil // no requester to check: nothing is granted
	}
	seen := map[rules.Source]string{}
	return func(src rules.Source) (string, error) {
		src.Path = nil
		if why, ok := seen[src]; ok {
			return why, nil
		}
		user, err := req.User()
		if err != nil {
			return "", err
		}
		why, err := grants.Granted(ctx, user, namespace, src)
		if err == nil {
			seen[src] = why
		}
		return why, err
	}
}
