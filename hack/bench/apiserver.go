package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/webhook/rules"
)

// mode is who the apiserver calls for PersistentVolumeClaim creates.
type mode string

const (
	modeNone      mode = "none"      // no webhook registered
	modeNull      mode = "null"      // the null webhook, registered exactly like clonegate
	modeClonegate mode = "clonegate" // clonegate with its shipped registration
)

var modes = []mode{modeNone, modeNull, modeClonegate}

// registrations switches the apiserver between the three modes by creating
// and deleting webhook configurations.
type registrations struct {
	c          client.Client
	mutating   *admissionregistrationv1.MutatingWebhookConfiguration
	validating *admissionregistrationv1.ValidatingWebhookConfiguration
	nullURL    string
	current    mode
}

// captureRegistrations reads clonegate's registrations as envtest installed
// them from config/webhook (pointed at the local clonegate).
func captureRegistrations(ctx context.Context, c client.Client, nullURL string) (*registrations, error) {
	r := &registrations{c: c, nullURL: nullURL, current: modeClonegate,
		mutating: &admissionregistrationv1.MutatingWebhookConfiguration{}, validating: &admissionregistrationv1.ValidatingWebhookConfiguration{}}
	if err := c.Get(ctx, client.ObjectKey{Name: "clonegate-mutating"}, r.mutating); err != nil {
		return nil, fmt.Errorf("config/webhook registration: %w", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "clonegate-validating"}, r.validating); err != nil {
		return nil, fmt.Errorf("config/webhook registration: %w", err)
	}
	return r, nil
}

// objects returns the configurations of m: clonegate's as shipped, or the
// same with every URL pointed at the null webhook.
func (r *registrations) objects(m mode) []client.Object {
	mw, vw := r.mutating.DeepCopy(), r.validating.DeepCopy()
	for _, o := range []client.Object{mw, vw} {
		o.SetResourceVersion("")
		o.SetUID("")
		o.SetManagedFields(nil)
		o.SetCreationTimestamp(metav1.Time{})
		o.SetGeneration(0)
	}
	if m == modeNull {
		for i := range mw.Webhooks {
			mw.Webhooks[i].ClientConfig.URL = ptr(r.nullURL + pathOf(mw.Webhooks[i].ClientConfig.URL))
		}
		for i := range vw.Webhooks {
			vw.Webhooks[i].ClientConfig.URL = ptr(r.nullURL + pathOf(vw.Webhooks[i].ClientConfig.URL))
		}
	}
	return []client.Object{mw, vw}
}

func pathOf(url *string) string {
	s := strings.TrimPrefix(*url, "https://")
	if i := strings.Index(s, "/"); i >= 0 {
		return s[i:]
	}
	return "/"
}

// set registers m's webhooks and waits until the apiserver calls them.
func (r *registrations) set(ctx context.Context, m mode) error {
	if m == r.current {
		return r.await(ctx, m)
	}
	for _, o := range r.objects(r.current) {
		if err := r.c.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if m != modeNone {
		for _, o := range r.objects(m) {
			if err := r.c.Create(ctx, o); err != nil {
				return err
			}
		}
	}
	r.current = m
	return r.await(ctx, m)
}

// await polls with dry-run probe claims until both webhooks behave as m's:
// the mutating probe (a VolumeSnapshot source without apiGroup) is dropped by
// the apiserver, denied by the null webhook, or defaulted by clonegate; the
// validating probe (a clone smaller than its source) is admitted, denied by
// the null webhook, or denied by clonegate's size rule.
func (r *registrations) await(ctx context.Context, m mode) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		mut, val, err := r.probe(ctx)
		if err != nil {
			return false, err
		}
		last = fmt.Sprintf("mutating=%s validating=%s", mut, val)
		return mut == m && val == m, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the apiserver to apply the %s registration (last probe: %s): %w", m, last, err)
	}
	return nil
}

func (r *registrations) probe(ctx context.Context) (mut, val mode, err error) {
	pm := claim(probePrefix+"mutating", nil)
	pm.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: rules.KindSnapshot, Name: "probe"}
	switch err := r.c.Create(ctx, pm, client.DryRunAll); {
	case err != nil && strings.Contains(err.Error(), "null webhook"):
		mut = modeNull
	case err != nil:
		return "", "", fmt.Errorf("mutating probe: %w", err)
	case pm.Spec.DataSource != nil && pm.Spec.DataSource.APIGroup != nil && *pm.Spec.DataSource.APIGroup == rules.SnapshotAPIGroup:
		mut = modeClonegate
	default:
		mut = modeNone
	}
	src := srcName
	pv := claim(probePrefix+"validating", &src)
	pv.Spec.Resources.Requests[corev1.ResourceStorage] = mustQuantity("1Gi")
	switch err := r.c.Create(ctx, pv, client.DryRunAll); {
	case err == nil:
		val = modeNone
	case strings.Contains(err.Error(), "null webhook"):
		val = modeNull
	case strings.Contains(err.Error(), "must be at least"):
		val = modeClonegate
	default:
		return "", "", fmt.Errorf("validating probe: %w", err)
	}
	return mut, val, nil
}

// Latency is the median and p99 of one kind of create, in milliseconds.
type Latency struct {
	N     int     `json:"n"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// APIServerResult is the creates' latency per mode.
type APIServerResult struct {
	Rounds  int                `json:"rounds"`
	Clone   map[mode]Latency   `json:"clone"`
	Restore map[mode]Latency   `json:"restore"`
	Plain   map[mode]Latency   `json:"plain"`
	Ratios  map[string]float64 `json:"ratios"`
}

// createRounds times creates through the apiserver, rounds interleaved over
// the modes (none, null, clonegate, none, …) so that drift in the machine's
// speed falls on all three alike. Within a round each kind is a batch of its
// own, plain claims first: a plain create timed right after a clone's review
// would pay that review's after-effects on a shared 2-core machine (the
// apiserver's and the webhook's garbage, their CPU), which is not what a
// plain claim costs.
func createRounds(ctx context.Context, c client.Client, reg *registrations, rounds, perRound int) (APIServerResult, error) {
	clones := map[mode][]time.Duration{}
	restores := map[mode][]time.Duration{}
	plains := map[mode][]time.Duration{}
	src := srcName
	for round := range rounds {
		// The registrations take turns, and the first turn rotates, so that
		// none of them is always timed after the other two.
		for k := range modes {
			m := modes[(round+k)%len(modes)]
			if err := reg.set(ctx, m); err != nil {
				return APIServerResult{}, err
			}
			for _, kind := range []string{"plain", "clone", "restore"} {
				for i := range perRound {
					name := fmt.Sprintf("%s-%s-%d-%d", kind, m, round, i)
					obj, times := claim(name, nil), plains
					switch kind {
					case "clone":
						obj, times = claim(name, &src), clones
					case "restore":
						obj, times = restore(name), restores
					}
					start := time.Now()
					if err := c.Create(ctx, obj); err != nil {
						return APIServerResult{}, fmt.Errorf("create %s with %s: %w", name, m, err)
					}
					times[m] = append(times[m], time.Since(start))
				}
			}
		}
	}
	// Leave clonegate registered, as shipped.
	if err := reg.set(ctx, modeClonegate); err != nil {
		return APIServerResult{}, err
	}
	res := APIServerResult{Rounds: rounds, Clone: map[mode]Latency{}, Restore: map[mode]Latency{}, Plain: map[mode]Latency{}, Ratios: map[string]float64{}}
	for _, m := range modes {
		res.Clone[m] = latency(clones[m])
		res.Restore[m] = latency(restores[m])
		res.Plain[m] = latency(plains[m])
	}
	res.Ratios["clone_p50_clonegate_over_none"] = res.Clone[modeClonegate].P50Ms / res.Clone[modeNone].P50Ms
	res.Ratios["clone_p50_clonegate_over_null"] = res.Clone[modeClonegate].P50Ms / res.Clone[modeNull].P50Ms
	res.Ratios["plain_p50_clonegate_over_none"] = res.Plain[modeClonegate].P50Ms / res.Plain[modeNone].P50Ms
	res.Ratios["plain_p50_clonegate_over_null"] = res.Plain[modeClonegate].P50Ms / res.Plain[modeNull].P50Ms
	res.Ratios["restore_p50_clonegate_over_null"] = res.Restore[modeClonegate].P50Ms / res.Restore[modeNull].P50Ms
	// A restore's review against a clone's, both through clonegate: what
	// the snapshot lookup costs beyond the claim lookup.
	res.Ratios["restore_p50_over_clone_p50_clonegate"] = res.Restore[modeClonegate].P50Ms / res.Clone[modeClonegate].P50Ms
	return res, nil
}

func latency(ds []time.Duration) Latency {
	slices.Sort(ds)
	return Latency{N: len(ds), P50Ms: ms(percentile(ds, 0.5)), P99Ms: ms(percentile(ds, 0.99))}
}

func ptr[T any](v T) *T { return &v }
