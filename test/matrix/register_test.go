package matrix

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// saved holds clonegate's webhook registrations while the matrix runs without them.
var saved sync.Map // *cluster -> []client.Object

// registerClonegate removes clonegate's webhook registrations (on=false) or puts them back
// (on=true), and waits until the apiserver acts on the change.
func registerClonegate(c *cluster, on bool) error {
	ctx := context.Background()
	if !on {
		var objs []client.Object
		var mutating admissionv1.MutatingWebhookConfigurationList
		var validating admissionv1.ValidatingWebhookConfigurationList
		if err := c.client.List(ctx, &mutating); err != nil {
			return err
		}
		if err := c.client.List(ctx, &validating); err != nil {
			return err
		}
		for i := range mutating.Items {
			if strings.HasPrefix(mutating.Items[i].Name, "clonegate") {
				objs = append(objs, &mutating.Items[i])
			}
		}
		for i := range validating.Items {
			if strings.HasPrefix(validating.Items[i].Name, "clonegate") {
				objs = append(objs, &validating.Items[i])
			}
		}
		if len(objs) != 2 {
			return fmt.Errorf("found %d clonegate webhook configurations, want 2 (mutating and validating)", len(objs))
		}
		for _, o := range objs {
			if err := c.client.Delete(ctx, o); err != nil {
				return err
			}
		}
		saved.Store(c, objs)
	} else {
		v, ok := saved.Load(c)
		if !ok {
			return fmt.Errorf("no saved registrations")
		}
		for _, o := range v.([]client.Object) {
			o.SetResourceVersion("")
			o.SetUID("")
			o.SetCreationTimestamp(metav1.Time{})
			o.SetManagedFields(nil)
			if err := c.client.Create(ctx, o); err != nil {
				return err
			}
		}
	}
	return waitRegistered(c, on)
}

// waitRegistered probes with server-side dry runs until both webhooks answer (on) or neither
// does: a cross-namespace source only the mutating webhook denies, and a missing source only
// the validating webhook warns of.
func waitRegistered(c *cluster, on bool) error {
	const ns = "matrix-probe"
	_ = client.IgnoreAlreadyExists(c.client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	cross := claim("probe-cross", claimOpts{class: str(classImmediate)})
	cross.Namespace = ns
	cross.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: pvcKind, Name: "src", Namespace: str("elsewhere")}
	missing := claim("probe-missing", claimOpts{class: str(classImmediate)})
	missing.Namespace = ns
	missing.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: pvcKind, Name: "nothing-here"}
	docs := map[string]string{}
	for _, p := range []*corev1.PersistentVolumeClaim{cross, missing} {
		b, err := yaml.Marshal(p)
		if err != nil {
			return err
		}
		docs[p.Name] = string(b)
	}
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, minute, true, func(context.Context) (bool, error) {
		crossDenied := c.kubectl(docs["probe-cross"], "create", "--dry-run=server", "-f", "-").Code != 0
		warned := strings.Contains(c.kubectl(docs["probe-missing"], "create", "--dry-run=server", "-f", "-").Stderr, "Warning:")
		return crossDenied == on && warned == on, nil
	})
	if err != nil {
		return fmt.Errorf("clonegate's webhooks did not become %s: %w", map[bool]string{true: "active", false: "inactive"}[on], err)
	}
	return nil
}
