package e2e

import (
	"context"
	"path/filepath"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The watches --cert-mode=self opens (its Secret and its two webhook
// configurations, each by name) are allowed by config/rbac as the service
// account itself, not only in a SubjectAccessReview: a watch refused would
// leave a caBundle emptied until the next check.
func TestServiceAccountWatchesByName(t *testing.T) {
	e := shared["gate-off"]
	const ns = "clonegate-system"
	if r := e.Kubectl("apiVersion: v1\nkind: Namespace\nmetadata: {name: clonegate-system}\n", "apply", "-f", "-"); r.Code != 0 {
		t.Fatal(r.Output())
	}
	expect(t, e.Kubectl("", "apply", "-n", ns, "-k", filepath.Join(root, "config", "rbac")), 0)
	cfg := rest.CopyConfig(e.Env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:clonegate-system:clonegate",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:clonegate-system", "system:authenticated"}}
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = admissionregistrationv1.AddToScheme(scheme)
	sa, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		list client.ObjectList
		opts []client.ListOption
		ok   bool
	}{
		{"its Secret by name", &corev1.SecretList{}, []client.ListOption{client.InNamespace(ns), client.MatchingFields{"metadata.name": "clonegate-webhook-cert"}}, true},
		{"its mutating configuration by name", &admissionregistrationv1.MutatingWebhookConfigurationList{}, []client.ListOption{client.MatchingFields{"metadata.name": "clonegate-mutating"}}, true},
		{"its validating configuration by name", &admissionregistrationv1.ValidatingWebhookConfigurationList{}, []client.ListOption{client.MatchingFields{"metadata.name": "clonegate-validating"}}, true},
		{"every Secret of its namespace", &corev1.SecretList{}, []client.ListOption{client.InNamespace(ns)}, false},
		{"every validating configuration", &admissionregistrationv1.ValidatingWebhookConfigurationList{}, nil, false},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		w, err := sa.Watch(ctx, c.list, c.opts...)
		if err == nil {
			w.Stop()
		}
		cancel()
		if c.ok && err != nil {
			t.Errorf("watching %s: %v", c.what, err)
		}
		if !c.ok && !apierrors.IsForbidden(err) {
			t.Errorf("watching %s: %v, want forbidden", c.what, err)
		}
	}
}
