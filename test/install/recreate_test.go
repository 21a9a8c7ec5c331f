package install

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/clonegate/clonegate/certs"
)

// TestSecretRecreatedWithoutFailedReviews: replicas checking on their own
// only once an hour follow a deleted Secret, a damaged CA key and an emptied
// caBundle at once (they watch all three), and a new CA keeps trusting the
// old one, so that a replica still serving the old certificate is trusted
// meanwhile: not one review fails.
func TestSecretRecreatedWithoutFailedReviews(t *testing.T) {
	c := cluster(t)
	cl, err := certs.NewClient(c.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kubectl(t, c, "create", "namespace", certNamespace)
	hourly := "--cert-check-interval=1h"
	a := startReplica(t, c, "replica-a", hourly)
	b := startReplica(t, c, "replica-b", hourly)
	installWebhooks(t, cl, a.addr) // the apiserver calls replica a
	poll(t, "both replicas ready", 60*time.Second, func() (bool, error) { return a.ready() && b.ready(), nil }, a, b)
	kubectl(t, c, "apply", "-f", filepath.Join(root, "config", "samples", "01-source.yaml"))
	kubectl(t, c, "patch", "pvc", "source", "--subresource=status", "--type=merge",
		"-p", `{"status":{"phase":"Bound","capacity":{"storage":"5Gi"}}}`)
	expectDenied(t, c, "clone-too-small")

	// Reviews all along: each must reach clonegate and be judged by it.
	var judged, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := c.Kubectl("", "apply", "--dry-run=server", "-f", filepath.Join(root, "config", "samples", "03-clone-too-small.yaml"))
			if r.Code == 1 && strings.Contains(r.Output(), "must be at least 5Gi") {
				judged.Add(1)
			} else {
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, r.Output())
			}
		}
	}()
	finish := func() {
		close(stop)
		wg.Wait()
		t.Logf("%d reviews judged, %d failed", judged.Load(), failed.Load())
		if n := failed.Load(); n > 0 {
			t.Errorf("%d reviews failed; the first:\n%v", n, firstFailure.Load())
		}
	}
	defer func() {
		select {
		case <-stop:
		default:
			finish()
		}
	}()

	secretBundle := func() (*certs.Bundle, error) {
		s := &corev1.Secret{}
		if err := cl.Get(ctx, secretKey, s); err != nil {
			return nil, err
		}
		return certs.ParseBundle(s.Data)
	}
	// everyoneServes waits until each replica serves the Secret's
	// certificate, verified against the injected caBundle.
	everyoneServes := func(what string, replicas ...*replica) {
		t.Helper()
		poll(t, what, 30*time.Second, func() (bool, error) {
			bundle, err := secretBundle()
			if err != nil {
				return false, nil
			}
			for _, cb := range caBundles(t, cl) {
				if string(cb) != string(bundle.CABundle()) {
					return false, nil
				}
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(bundle.CABundle())
			for _, r := range replicas {
				if served, err := r.servedCert(roots); err != nil || !served.Equal(bundle.Cert) {
					return false, nil
				}
			}
			return true, nil
		}, replicas...)
	}
	// moreReviews waits for n more reviews to run, against whatever was just
	// changed: without the watch, a replica would not notice for an hour.
	moreReviews := func(n int64) {
		t.Helper()
		want := judged.Load() + failed.Load() + n
		poll(t, "more reviews", 60*time.Second, func() (bool, error) { return judged.Load()+failed.Load() >= want, nil }, a, b)
	}
	first, err := secretBundle()
	if err != nil {
		t.Fatal(err)
	}

	// The README's way to force a rotation: delete the Secret. A third
	// replica (a rollout, say) starting meanwhile must not cut the others off.
	if err := cl.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secretKey.Namespace, Name: secretKey.Name}}); err != nil {
		t.Fatal(err)
	}
	d := startReplica(t, c, "replica-c", hourly)
	everyoneServes("every replica to serve the recreated Secret's certificate", a, b, d)
	moreReviews(5)
	second, _ := secretBundle()
	if second.CA.Equal(first.CA) {
		t.Error("deleting the Secret did not issue a new CA")
	}
	if !containsCA(second, first.CA) {
		t.Error("the new bundle does not trust the CA of the deleted Secret, which replicas were serving")
	}

	// A damaged CA key: a new CA again, still trusting the old ones.
	s := &corev1.Secret{}
	if err := cl.Get(ctx, secretKey, s); err != nil {
		t.Fatal(err)
	}
	s.Data["ca.key"] = []byte("damaged")
	if err := cl.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	everyoneServes("every replica to serve the certificate of the new CA", a, b, d)
	moreReviews(5)
	if third, _ := secretBundle(); third.CA.Equal(second.CA) || !containsCA(third, second.CA) {
		t.Error("a damaged CA key: want a new CA that still trusts the previous one")
	}

	// A GitOps tool re-applying the configurations empties caBundle.
	kubectl(t, c, "patch", "validatingwebhookconfiguration", "clonegate-validating", "--type=json",
		"-p", `[{"op":"remove","path":"/webhooks/0/clientConfig/caBundle"}]`)
	everyoneServes("the emptied caBundle to be repaired", a, b, d)
	moreReviews(5)
	finish()
	if judged.Load() < 10 {
		t.Errorf("only %d reviews ran; the test proves little", judged.Load())
	}
}

func containsCA(b *certs.Bundle, ca *x509.Certificate) bool {
	for _, c := range b.Trusted {
		if c.Equal(ca) {
			return true
		}
	}
	return false
}
